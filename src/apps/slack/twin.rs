//! Slack emulator: the Web API methods offboard calls (`/api/{method}`, GET
//! or POST, arguments in the query, a form body or a JSON body, the token in
//! `Authorization: Bearer` or a `token` argument) and SCIM (`/scim/v2/Users`,
//! `/scim/v1/Users`).
//!
//! Like Slack, Web API errors are HTTP 200 with `{"ok":false,"error":…}`
//! (plus `needed`/`provided` for `missing_scope`); only rate limits are 429
//! (`Retry-After`, `error:"ratelimited"`). With the `slack_tiers` fault set,
//! each method is paced by its tier as Slack does (per method: one method
//! running out never limits another). Cursors are opaque. Removed
//! sessions, group memberships, disabled groups and removed role
//! assignments stay listed for the consistency delay.

use std::collections::{BTreeMap, HashMap, VecDeque};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::sandbox::Shared;
use crate::sandbox::tenant::{self, Scenario};

/// Demo admin user token (not a secret: it only opens this sandbox).
pub const DEMO_USER_TOKEN: &str = "xoxp-1000000001-offboard-sandbox-demo-user-token";
/// Demo SCIM token (not a secret).
pub const DEMO_SCIM_TOKEN: &str = "xoxp-1000000002-offboard-sandbox-demo-scim-token";
/// A demo token that may only read users (`users:read`, `users:read.email`):
/// every admin method answers `missing_scope`.
pub const DEMO_READONLY_TOKEN: &str = "xoxp-1000000003-offboard-sandbox-demo-readonly";

pub const TEAM_ID: &str = "T0DEMO0001";
pub const ENTERPRISE_ID: &str = "E0DEMO0001";
/// The admin whose token the demo uses.
pub const ADMIN_USER_ID: &str = "U0ADMIN001";

const ALL_SCOPES: &[&str] = &[
    "users:read",
    "users:read.email",
    "usergroups:read",
    "usergroups:write",
    "admin",
    "admin.users:read",
    "admin.users:write",
    "admin.roles:read",
    "admin.roles:write",
    "admin.apps:write",
];
const READONLY_SCOPES: &[&str] = &["users:read", "users:read.email"];

/// A Slack user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub real_name: String,
    pub first: String,
    pub last: String,
    pub email: String,
    pub deleted: bool,
    pub is_admin: bool,
    pub is_owner: bool,
    pub is_primary_owner: bool,
    pub is_restricted: bool,
    pub is_ultra_restricted: bool,
    pub is_bot: bool,
    /// The workspace `users.info` reports (`TEAM_ID`; a test may put
    /// hostile text here, as a broken or malicious API could send).
    pub team_id: String,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub hardware: &'static str,
    pub os: &'static str,
    pub os_version: &'static str,
    pub client: &'static str,
    pub ip: String,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: u64,
    pub user_id: String,
    pub device: Device,
    pub removed_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct UserGroup {
    pub id: String,
    pub name: String,
    pub handle: String,
    pub description: String,
    pub users: Vec<String>,
    /// Members removed, and when (they stay listed for the consistency delay).
    pub removed: Vec<(String, Instant)>,
    pub disabled_at: Option<Instant>,
    pub date_create: i64,
    pub date_update: i64,
    pub created_by: String,
    pub updated_by: String,
}

#[derive(Debug, Clone)]
pub struct RoleAssignment {
    pub role_id: String,
    pub entity_id: String,
    pub user_id: String,
    pub date_create: i64,
    pub removed_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct IntegrationLog {
    pub app_id: String,
    pub app_type: &'static str,
    pub service_type: String,
    pub change_type: &'static str,
    pub user_id: String,
    pub user_name: String,
    pub date: i64,
    pub scope: &'static str,
}

/// Test hooks that make races and rate limits deterministic.
#[derive(Debug, Default)]
pub struct Hooks {
    /// After the Nth `usergroups.users.list` of this group has been
    /// answered, add this user to it (another admin racing the driver).
    pub add_member_after_read: Option<(String, String, u32)>,
    /// Reads of each group served so far (for the hook above).
    pub reads: HashMap<String, u32>,
    /// Answer the next N Web API calls with 429 `ratelimited`, with this
    /// Retry-After in seconds.
    pub rate_limit_next: Option<(u32, u64)>,
}

/// The emulated Slack org.
#[derive(Debug)]
pub struct State {
    pub users: Vec<User>,
    pub sessions: Vec<Session>,
    pub groups: Vec<UserGroup>,
    pub roles: Vec<RoleAssignment>,
    pub logs: Vec<IntegrationLog>,
    pub hooks: Hooks,
    /// Web API calls served, by method (for tests).
    pub calls: BTreeMap<String, u32>,
    /// The latest rate-limit answers and method results, in order: method
    /// and HTTP status (for tests; the oldest are dropped beyond
    /// [`SERVED_KEPT`]).
    pub served: VecDeque<(String, u16)>,
    /// Per-method token buckets of the `slack_tiers` fault: tokens, last refill.
    tier_buckets: HashMap<String, (f64, Instant)>,
    next_session: u64,
}

/// How many answers [`State::served`] keeps.
pub const SERVED_KEPT: usize = 2000;

/// One tier's limit in the `slack_tiers` fault: `per_minute` sustained,
/// `burst` at once (default: a minute's worth).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TierRule {
    pub per_minute: f64,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Slack's documented tier minimums (Tier 1 1+/min, Tier 2 20+/min,
/// Tier 3 50+/min, Tier 4 100+/min); `special` (auth.test) as Tier 4.
fn documented_tier(tier: &str) -> TierRule {
    let per_minute = match tier {
        "tier1" => 1.0,
        "tier3" => 50.0,
        "tier4" | "special" => 100.0,
        _ => 20.0,
    };
    TierRule {
        per_minute,
        burst: None,
    }
}

/// The tier Slack documents for each emulated method.
pub fn method_tier(method: &str) -> &'static str {
    match method {
        "auth.test" => "special",
        "users.lookupByEmail" => "tier3",
        "users.info" => "tier4",
        _ => "tier2",
    }
}

impl State {
    /// Takes a token from the method's bucket under the `slack_tiers`
    /// fault; `Err(seconds)` is the Retry-After when there is none.
    fn take_tier_token(
        &mut self,
        method: &str,
        rules: &BTreeMap<String, TierRule>,
    ) -> Result<(), u64> {
        let tier = method_tier(method);
        let rule = rules
            .get(tier)
            .copied()
            .unwrap_or_else(|| documented_tier(tier));
        let rate = (rule.per_minute / 60.0).max(1e-6);
        let burst = f64::from(rule.burst.unwrap_or(rule.per_minute.ceil() as u32).max(1));
        let now = Instant::now();
        let (tokens, last) = self
            .tier_buckets
            .entry(method.to_string())
            .or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    fn record(&mut self, method: &str, status: u16) {
        if self.served.len() >= SERVED_KEPT {
            self.served.pop_front();
        }
        self.served.push_back((method.to_string(), status));
    }
}

fn slack_id(prefix: char, n: u32) -> String {
    format!("{prefix}0D{n:06}")
}

impl State {
    pub fn seed() -> Self {
        let people = tenant::people();
        let base_ts: i64 = 1_717_000_000;
        let mut users = vec![User {
            id: ADMIN_USER_ID.into(),
            name: "admin".into(),
            real_name: "Demo Admin".into(),
            first: "Demo".into(),
            last: "Admin".into(),
            email: crate::sandbox::DEMO_ADMIN.into(),
            deleted: false,
            is_admin: true,
            is_owner: true,
            is_primary_owner: true,
            is_restricted: false,
            is_ultra_restricted: false,
            is_bot: false,
            team_id: TEAM_ID.into(),
        }];
        let mut st = State {
            users: Vec::new(),
            sessions: Vec::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            logs: Vec::new(),
            hooks: Hooks::default(),
            calls: BTreeMap::new(),
            served: VecDeque::new(),
            tier_buckets: HashMap::new(),
            next_session: 7_000_000_100,
        };
        for p in &people {
            let id = slack_id('U', p.n);
            let mut u = User {
                id: id.clone(),
                name: p.email.split('@').next().unwrap_or_default().to_string(),
                real_name: p.full_name(),
                first: p.first.clone(),
                last: p.last.clone(),
                email: p.email.clone(),
                deleted: false,
                is_admin: false,
                is_owner: false,
                is_primary_owner: false,
                is_restricted: false,
                is_ultra_restricted: false,
                is_bot: false,
                team_id: TEAM_ID.into(),
            };
            match p.scenario {
                Some(Scenario::UrgentTermination) => u.is_admin = true,
                Some(Scenario::SlackOnlyContractor) => u.is_restricted = true,
                _ => {}
            }
            // A few ordinary people: one deactivated long ago, two admins,
            // one owner (so the admin lists are not only leavers).
            match p.n {
                20 => u.deleted = true,
                21 | 22 => u.is_admin = true,
                23 => {
                    u.is_admin = true;
                    u.is_owner = true;
                }
                _ => {}
            }
            users.push(u);
        }
        st.users = users;

        let devices = [
            ("MacBookPro18,3", "Mac OS", "14.5.0", "4.39.95"),
            ("iPhone15,2", "iOS", "17.5.1", "24.06.10"),
            ("Pixel 8", "Android", "14", "24.06.20.0"),
            ("PC", "Windows", "10.0.22631", "4.39.90"),
            ("Chrome", "Web", "126.0", "web"),
        ];
        let sessions_for = |sc: Option<Scenario>, n: u32| -> usize {
            match sc {
                Some(Scenario::Scheduled) => 5,
                Some(Scenario::UrgentTermination) => 4,
                Some(Scenario::AlreadySuspended) => 2,
                Some(Scenario::SlackOnlyContractor) => 1,
                Some(_) => 2,
                None if n == 20 => 0,
                None => (n % 3) as usize,
            }
        };
        for p in &people {
            let k = sessions_for(p.scenario, p.n);
            for i in 0..k {
                let (hardware, os, os_version, client) =
                    devices[(i + p.n as usize) % devices.len()];
                st.add_session(
                    &slack_id('U', p.n),
                    Device {
                        hardware,
                        os,
                        os_version,
                        client,
                        ip: format!("198.51.100.{}", (p.n * 7 + i as u32) % 250 + 1),
                    },
                );
            }
        }

        // User groups: one per department, plus twelve others.
        let uid = |n: u32| slack_id('U', n);
        let mut gn = 0u32;
        let mut add_group = |st: &mut State, handle: &str, name: &str, users: Vec<String>| {
            gn += 1;
            st.groups.push(UserGroup {
                id: slack_id('S', gn),
                name: name.into(),
                handle: handle.into(),
                description: format!("{name} (demo)"),
                users,
                removed: Vec::new(),
                disabled_at: None,
                date_create: base_ts + i64::from(gn) * 86_400,
                date_update: base_ts + i64::from(gn) * 86_400,
                created_by: ADMIN_USER_ID.into(),
                updated_by: ADMIN_USER_ID.into(),
            });
        };
        for d in tenant::DEPARTMENTS {
            let members: Vec<String> = people
                .iter()
                .filter(|p| p.department == *d && p.scenario != Some(Scenario::SlackOnlyContractor))
                .map(|p| uid(p.n))
                .collect();
            add_group(&mut st, &d.to_ascii_lowercase(), d, members);
        }
        let leaver_n = |sc: Scenario| {
            people
                .iter()
                .find(|p| p.scenario == Some(sc))
                .map(|p| p.n)
                .expect("every scenario has a leaver")
        };
        let dana = leaver_n(Scenario::Scheduled);
        let marcus = leaver_n(Scenario::UrgentTermination);
        let tom = leaver_n(Scenario::AlreadySuspended);
        let sam = leaver_n(Scenario::SlackOnlyContractor);
        let priya = leaver_n(Scenario::Mover);
        let lena = leaver_n(Scenario::Contractor);
        let alex = leaver_n(Scenario::DifferentEmail);
        let crowd = |from: u32, count: u32| (from..from + count).map(uid).collect::<Vec<_>>();
        let with = |mut v: Vec<String>, extra: &[u32]| {
            v.extend(extra.iter().map(|n| uid(*n)));
            v
        };
        add_group(
            &mut st,
            "finance-approvers",
            "Finance approvers",
            vec![uid(dana)],
        );
        add_group(
            &mut st,
            "expense-admins",
            "Expense admins",
            with(crowd(30, 3), &[dana]),
        );
        add_group(
            &mut st,
            "managers",
            "All managers",
            with(crowd(40, 12), &[dana, marcus, priya]),
        );
        add_group(
            &mut st,
            "oncall-eng",
            "Engineering on-call",
            with(crowd(60, 6), &[marcus]),
        );
        add_group(
            &mut st,
            "incident-commanders",
            "Incident commanders",
            with(crowd(70, 4), &[marcus, tom]),
        );
        add_group(
            &mut st,
            "sales-emea",
            "Sales EMEA",
            with(crowd(80, 9), &[priya]),
        );
        add_group(
            &mut st,
            "marketing-leads",
            "Marketing leads",
            with(crowd(90, 4), &[priya]),
        );
        add_group(
            &mut st,
            "contractors",
            "Contractors",
            vec![uid(sam), uid(lena), uid(110)],
        );
        add_group(
            &mut st,
            "ext-design",
            "External design partners",
            vec![uid(sam), uid(111)],
        );
        add_group(
            &mut st,
            "data-platform",
            "Data platform",
            with(crowd(120, 7), &[alex, tom]),
        );
        add_group(
            &mut st,
            "security-champions",
            "Security champions",
            with(crowd(130, 5), &[marcus]),
        );
        add_group(&mut st, "office-berlin", "Office Berlin", crowd(140, 25));
        // One disabled group the leaver is still a member of.
        add_group(
            &mut st,
            "legacy-finance",
            "Legacy finance (disabled)",
            vec![uid(dana), uid(31)],
        );
        if let Some(g) = st.groups.last_mut() {
            g.disabled_at = Some(Instant::now() - std::time::Duration::from_secs(86_400));
        }

        // Org-level admin roles (admin.roles.*). Role ids as Slack's
        // built-in system roles.
        let role = |st: &mut State, role_id: &str, entity: &str, user: &str, age: i64| {
            st.roles.push(RoleAssignment {
                role_id: role_id.into(),
                entity_id: entity.into(),
                user_id: user.into(),
                date_create: base_ts + age,
                removed_at: None,
            });
        };
        role(&mut st, "Rl0A", ENTERPRISE_ID, &uid(marcus), 10);
        role(&mut st, "Rl0B", TEAM_ID, &uid(marcus), 11);
        role(&mut st, "Rl0C", "C0DEMOCHAN1", &uid(marcus), 12);
        role(&mut st, "Rl0A", ENTERPRISE_ID, &uid(21), 20);
        role(&mut st, "Rl0B", TEAM_ID, &uid(22), 21);
        role(&mut st, "Rl0D", TEAM_ID, &uid(dana), 22);
        role(&mut st, "Rl0A", ENTERPRISE_ID, ADMIN_USER_ID, 1);

        // Apps and bots installed by people (team.integrationLogs).
        let log = |st: &mut State, app: &str, svc: &str, change: &'static str, n: u32, ts: i64| {
            let user = uid(n);
            let name = st.user(&user).map(|u| u.name.clone()).unwrap_or_default();
            st.logs.push(IntegrationLog {
                app_id: app.into(),
                app_type: "app",
                service_type: svc.into(),
                change_type: change,
                user_id: user,
                user_name: name,
                date: ts,
                scope: "chat:write,commands,incoming-webhook",
            });
        };
        log(
            &mut st,
            "A0DEXPENSE",
            "Expense Bot",
            "added",
            dana,
            base_ts + 1_000,
        );
        log(
            &mut st,
            "A0DOLDPOLL",
            "Quick Poll",
            "added",
            dana,
            base_ts + 1_100,
        );
        log(
            &mut st,
            "A0DOLDPOLL",
            "Quick Poll",
            "removed",
            dana,
            base_ts + 1_200,
        );
        log(
            &mut st,
            "A0DDEPLOY1",
            "Deploy Notifier",
            "added",
            marcus,
            base_ts + 2_000,
        );
        log(
            &mut st,
            "A0DPAGERBR",
            "Pager Bridge",
            "added",
            marcus,
            base_ts + 2_100,
        );
        log(
            &mut st,
            "A0DSTANDUP",
            "Standup Bot",
            "added",
            33,
            base_ts + 3_000,
        );
        log(
            &mut st,
            "A0DTOMSYNC",
            "Calendar Sync",
            "added",
            tom,
            base_ts + 4_000,
        );
        st
    }

    /// Adds the benchmark leaver: an ordinary member with the sessions and
    /// user groups of `b` (each group has one other member, so removals go
    /// through `usergroups.users.update`).
    pub fn seed_bench(&mut self, b: &tenant::BenchShape) {
        let n = tenant::BenchShape::PERSON_N;
        let id = slack_id('U', n);
        self.users.push(User {
            id: id.clone(),
            name: b.email.split('@').next().unwrap_or_default().to_string(),
            real_name: "Bench Leaver".into(),
            first: "Bench".into(),
            last: "Leaver".into(),
            email: b.email.clone(),
            deleted: false,
            is_admin: false,
            is_owner: false,
            is_primary_owner: false,
            is_restricted: false,
            is_ultra_restricted: false,
            is_bot: false,
            team_id: TEAM_ID.into(),
        });
        for i in 0..b.slack_sessions {
            self.add_session(
                &id,
                Device {
                    hardware: "MacBookPro18,3",
                    os: "Mac OS",
                    os_version: "14.5.0",
                    client: "4.39.95",
                    ip: format!("198.51.100.{}", i % 250 + 1),
                },
            );
        }
        let base_ts: i64 = 1_717_000_000;
        for i in 0..b.slack_groups {
            let gn = 9000 + i as u32;
            self.groups.push(UserGroup {
                id: slack_id('S', gn),
                name: format!("Bench group {i}"),
                handle: format!("bench-{i:04}"),
                description: "benchmark group".into(),
                users: vec![id.clone(), slack_id('U', 100 + (i as u32 % 150))],
                removed: Vec::new(),
                disabled_at: None,
                date_create: base_ts,
                date_update: base_ts,
                created_by: ADMIN_USER_ID.into(),
                updated_by: ADMIN_USER_ID.into(),
            });
        }
    }

    fn add_session(&mut self, user_id: &str, device: Device) {
        self.next_session += 17;
        self.sessions.push(Session {
            session_id: self.next_session,
            user_id: user_id.into(),
            device,
            removed_at: None,
        });
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email.trim()))
    }

    pub fn group(&self, id: &str) -> Option<&UserGroup> {
        self.groups.iter().find(|g| g.id == id)
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/{method}", any(web_api))
        .route("/scim/{version}/Users", get(scim_list))
        .route(
            "/scim/{version}/Users/{id}",
            get(scim_get).patch(scim_patch).delete(scim_delete),
        )
}

// ---------------------------------------------------------------- Web API

fn ok(mut v: Value) -> Response {
    v["ok"] = Value::Bool(true);
    Json(v).into_response()
}

fn err(code: &str) -> Response {
    Json(json!({"ok": false, "error": code})).into_response()
}

/// Slack's answer to a method name it does not have: HTTP 200, `ok:false`,
/// `unknown_method`, and the name asked for in `req_method`.
pub fn unknown_method(method: &str) -> Response {
    Json(json!({"ok": false, "error": "unknown_method", "req_method": method})).into_response()
}

/// The arguments of a call, from the query, a form body or a JSON body.
struct Args(HashMap<String, String>);

impl Args {
    fn parse(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Args, &'static str> {
        let mut m = HashMap::new();
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                m.insert(k.into_owned(), v.into_owned());
            }
        }
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !body.is_empty() {
            if ctype.starts_with("application/json") {
                let v: Value = serde_json::from_slice(body).map_err(|_| "invalid_json")?;
                let Value::Object(obj) = v else {
                    return Err("json_not_object");
                };
                for (k, v) in obj {
                    let s = match v {
                        Value::String(s) => s,
                        Value::Array(items) => items
                            .iter()
                            .map(|i| match i {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(","),
                        other => other.to_string(),
                    };
                    m.insert(k, s);
                }
            } else if ctype.starts_with("application/x-www-form-urlencoded") || ctype.is_empty() {
                for (k, v) in url::form_urlencoded::parse(body) {
                    m.insert(k.into_owned(), v.into_owned());
                }
            } else {
                return Err("invalid_post_type");
            }
        }
        Ok(Args(m))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    fn list(&self, k: &str) -> Vec<String> {
        self.get(k)
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `limit`, within `1..=max`, default `def`.
    fn limit(&self, def: usize, max: usize) -> Result<usize, &'static str> {
        match self.get("limit") {
            None => Ok(def),
            Some(s) => match s.parse::<usize>() {
                Ok(0) => Ok(def),
                Ok(n) if n <= max => Ok(n),
                _ => Err("invalid_limit"),
            },
        }
    }

    /// The offset an opaque cursor stands for.
    fn cursor(&self, kind: &str) -> Result<usize, &'static str> {
        let Some(c) = self.get("cursor") else {
            return Ok(0);
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(c)
            .map_err(|_| "invalid_cursor")?;
        let text = String::from_utf8(raw).map_err(|_| "invalid_cursor")?;
        let (k, n) = text.split_once(':').ok_or("invalid_cursor")?;
        if k != kind {
            return Err("invalid_cursor");
        }
        n.parse().map_err(|_| "invalid_cursor")
    }
}

fn cursor_for(kind: &str, offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{offset}"))
}

/// One page of `items` and the `response_metadata` for the next.
fn page<T: Clone>(items: &[T], offset: usize, limit: usize, kind: &str) -> (Vec<T>, Value) {
    let end = (offset + limit).min(items.len());
    let slice = items.get(offset..end).unwrap_or_default().to_vec();
    let next = if end < items.len() {
        cursor_for(kind, end)
    } else {
        String::new()
    };
    (slice, json!({"next_cursor": next}))
}

fn bearer(headers: &HeaderMap, args: &Args) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().to_string())
        .or_else(|| args.get("token").map(str::to_string))
}

/// The scope each emulated method needs.
fn needed_scope(method: &str) -> Option<&'static str> {
    Some(match method {
        "auth.test" => return None,
        "users.info" | "users.list" => "users:read",
        "users.lookupByEmail" => "users:read.email",
        "usergroups.list" | "usergroups.users.list" => "usergroups:read",
        "usergroups.users.update" | "usergroups.disable" => "usergroups:write",
        "admin.users.session.list" => "admin.users:read",
        "admin.users.session.invalidate"
        | "admin.users.session.reset"
        | "admin.users.setRegular" => "admin.users:write",
        "admin.roles.listAssignments" => "admin.roles:read",
        "admin.roles.removeAssignments" => "admin.roles:write",
        "admin.apps.uninstall" => "admin.apps:write",
        "team.integrationLogs" => "admin",
        _ => return None,
    })
}

/// The Web API methods served at `/api/{method}` (the OAuth twin serves
/// `oauth.v2.access` and `auth.revoke` on their own routes).
const SERVED_METHODS: &[&str] = &[
    "auth.test",
    "users.lookupByEmail",
    "users.info",
    "users.list",
    "usergroups.list",
    "usergroups.users.list",
    "usergroups.users.update",
    "usergroups.disable",
    "admin.users.session.list",
    "admin.users.session.invalidate",
    "admin.users.session.reset",
    "admin.users.setRegular",
    "admin.roles.listAssignments",
    "admin.roles.removeAssignments",
    "admin.apps.uninstall",
    "team.integrationLogs",
];

async fn web_api(
    AxState(s): AxState<Shared>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Slack names an unknown method before it looks at the token.
    if !SERVED_METHODS.contains(&method.as_str()) {
        return unknown_method(&method);
    }
    let args = match Args::parse(query.as_deref(), &headers, &body) {
        Ok(a) => a,
        Err(code) => return err(code),
    };
    let tiers = s.faults().slack_tiers;
    let mut st = s.slack.lock().expect("slack lock");
    *st.calls.entry(method.clone()).or_default() += 1;
    if let Some((n, secs)) = st.hooks.rate_limit_next {
        st.hooks.rate_limit_next = (n > 1).then(|| (n - 1, secs));
        st.record(&method, 429);
        return ratelimited(secs);
    }
    if let Some(rules) = &tiers
        && let Err(secs) = st.take_tier_token(&method, rules)
    {
        st.record(&method, 429);
        return ratelimited(secs);
    }
    let owned: Vec<String> = match bearer(&headers, &args).as_deref() {
        None => return err("not_authed"),
        Some(DEMO_USER_TOKEN) => ALL_SCOPES.iter().map(|x| x.to_string()).collect(),
        Some(DEMO_READONLY_TOKEN) => READONLY_SCOPES.iter().map(|x| x.to_string()).collect(),
        // User tokens from the OAuth v2 twin.
        Some(t) => match super::twin_oauth::user_token(&s, t) {
            Ok(granted) => granted,
            Err(code) => return err(code),
        },
    };
    let scopes: Vec<&str> = owned.iter().map(String::as_str).collect();
    let scope_header = HeaderValue::from_str(&scopes.join(",")).ok();
    if let Some(need) = needed_scope(&method)
        && !scopes.contains(&need)
    {
        return Json(json!({
            "ok": false,
            "error": "missing_scope",
            "needed": need,
            "provided": scopes.join(","),
        }))
        .into_response();
    }
    let r = match method.as_str() {
        "auth.test" => Ok(ok(json!({
            "url": "https://offboard-demo.slack.com/",
            "team": "Offboard Demo", "user": "admin",
            "team_id": TEAM_ID, "user_id": ADMIN_USER_ID,
            "enterprise_id": ENTERPRISE_ID, "is_enterprise_install": true,
        }))),
        "users.lookupByEmail" => users_lookup(&st, &args),
        "users.info" => users_info(&st, &args),
        "users.list" => users_list(&st, &args),
        "usergroups.list" => usergroups_list(&s, &st, &args),
        "usergroups.users.list" => usergroups_users_list(&s, &mut st, &args),
        "usergroups.users.update" => usergroups_users_update(&s, &mut st, &args),
        "usergroups.disable" => usergroups_disable(&s, &mut st, &args),
        "admin.users.session.list" => session_list(&s, &st, &args),
        "admin.users.session.invalidate" => session_invalidate(&mut st, &args),
        "admin.users.session.reset" => session_reset(&mut st, &args),
        "admin.users.setRegular" => set_regular(&mut st, &args),
        "admin.roles.listAssignments" => roles_list(&s, &st, &args),
        "admin.roles.removeAssignments" => roles_remove(&mut st, &args),
        "admin.apps.uninstall" => apps_uninstall(&mut st, &args),
        "team.integrationLogs" => integration_logs(&st, &args),
        _ => Ok(unknown_method(&method)),
    };
    // Like Slack, every answer names the token's scopes.
    let mut resp = r.unwrap_or_else(err);
    st.record(&method, resp.status().as_u16());
    if let Some(v) = scope_header {
        resp.headers_mut().insert("x-oauth-scopes", v);
    }
    resp
}

type R = Result<Response, &'static str>;

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "team_id": u.team_id,
        "name": u.name,
        "deleted": u.deleted,
        "color": "9f69e7",
        "real_name": u.real_name,
        "tz": "Europe/Berlin",
        "tz_label": "Central European Summer Time",
        "tz_offset": 7200,
        "profile": {
            "real_name": u.real_name,
            "display_name": u.first,
            "first_name": u.first,
            "last_name": u.last,
            "email": u.email,
            "team": u.team_id,
        },
        "is_admin": u.is_admin,
        "is_owner": u.is_owner,
        "is_primary_owner": u.is_primary_owner,
        "is_restricted": u.is_restricted,
        "is_ultra_restricted": u.is_ultra_restricted,
        "is_bot": u.is_bot,
        "is_app_user": false,
        "has_2fa": !u.is_restricted,
        "updated": 1_717_000_000,
        "enterprise_user": {
            "id": u.id,
            "enterprise_id": ENTERPRISE_ID,
            "enterprise_name": "Example Org",
            "is_admin": u.is_admin,
            "is_owner": u.is_owner,
            "teams": [TEAM_ID],
        },
    })
}

fn users_lookup(st: &State, a: &Args) -> R {
    let email = a.get("email").ok_or("invalid_arguments")?;
    // Slack's lookupByEmail also answers for deactivated users (deleted:true).
    let u = st.user_by_email(email).ok_or("users_not_found")?;
    Ok(ok(json!({"user": user_json(u)})))
}

fn users_info(st: &State, a: &Args) -> R {
    let id = a.get("user").ok_or("user_not_found")?;
    let u = st.user(id).ok_or("user_not_found")?;
    Ok(ok(json!({"user": user_json(u)})))
}

/// `users.list`: every member, deactivated ones included, cursor-paged
/// (Slack recommends at most 200 a page; 1000 is its hard cap).
fn users_list(st: &State, a: &Args) -> R {
    let limit = a.limit(200, 1000)?;
    let offset = a.cursor("users")?;
    let all: Vec<Value> = st.users.iter().map(user_json).collect();
    let (members, meta) = page(&all, offset, limit, "users");
    Ok(ok(json!({
        "members": members,
        "cache_ts": 1_717_000_000,
        "response_metadata": meta,
    })))
}

/// Members as reads show them: current members plus members removed within
/// the consistency delay.
fn listed_members(s: &Shared, g: &UserGroup) -> Vec<String> {
    let mut v = g.users.clone();
    for (u, at) in &g.removed {
        if s.still_listed(Some(*at)) && !v.contains(u) {
            v.push(u.clone());
        }
    }
    v
}

fn group_listed_as_enabled(s: &Shared, g: &UserGroup) -> bool {
    g.disabled_at.is_none() || s.still_listed(g.disabled_at)
}

fn group_json(s: &Shared, g: &UserGroup, include_users: bool) -> Value {
    let users = listed_members(s, g);
    let enabled = group_listed_as_enabled(s, g);
    let mut v = json!({
        "id": g.id,
        "team_id": TEAM_ID,
        "is_usergroup": true,
        "is_subteam": true,
        "name": g.name,
        "description": g.description,
        "handle": g.handle,
        "is_external": false,
        "date_create": g.date_create,
        "date_update": g.date_update,
        "date_delete": if enabled { 0 } else { g.date_update },
        "auto_type": null,
        "auto_provision": false,
        "enterprise_subteam_id": "",
        "created_by": g.created_by,
        "updated_by": g.updated_by,
        "deleted_by": null,
        "prefs": {"channels": [], "groups": []},
        "user_count": users.len(),
    });
    if include_users {
        v["users"] = json!(users);
    }
    v
}

fn usergroups_list(s: &Shared, st: &State, a: &Args) -> R {
    let include_disabled = a.flag("include_disabled");
    let include_users = a.flag("include_users");
    let groups: Vec<Value> = st
        .groups
        .iter()
        .filter(|g| include_disabled || group_listed_as_enabled(s, g))
        .map(|g| group_json(s, g, include_users))
        .collect();
    Ok(ok(json!({"usergroups": groups})))
}

fn find_group<'a>(s: &Shared, st: &'a State, a: &Args) -> Result<&'a UserGroup, &'static str> {
    let id = a.get("usergroup").ok_or("no_such_subteam")?;
    let g = st.group(id).ok_or("no_such_subteam")?;
    if !a.flag("include_disabled") && !group_listed_as_enabled(s, g) {
        return Err("no_such_subteam");
    }
    Ok(g)
}

fn usergroups_users_list(s: &Shared, st: &mut State, a: &Args) -> R {
    let g = find_group(s, st, a)?;
    let id = g.id.clone();
    let users = listed_members(s, g);
    let resp = ok(json!({"users": users}));
    // The race hook: another admin adds a member right after this read.
    let n = {
        let c = st.hooks.reads.entry(id.clone()).or_default();
        *c += 1;
        *c
    };
    if let Some((gid, user, after)) = st.hooks.add_member_after_read.clone()
        && gid == id
        && n == after
    {
        st.hooks.add_member_after_read = None;
        if let Some(g) = st.groups.iter_mut().find(|g| g.id == id) {
            if !g.users.contains(&user) {
                g.users.push(user.clone());
            }
            g.removed.retain(|(u, _)| *u != user);
            g.date_update += 1;
            g.updated_by = ADMIN_USER_ID.into();
        }
    }
    Ok(resp)
}

fn usergroups_users_update(s: &Shared, st: &mut State, a: &Args) -> R {
    let id = find_group(s, st, a)?.id.clone();
    let users = a.list("users");
    if users.is_empty() {
        // Slack: "Value passed for users was empty or invalid."
        return Err("invalid_users");
    }
    if users.iter().any(|u| st.user(u).is_none_or(|u| u.deleted)) {
        return Err("invalid_users");
    }
    let now = Instant::now();
    let g = st
        .groups
        .iter_mut()
        .find(|g| g.id == id)
        .ok_or("no_such_subteam")?;
    for old in &g.users {
        if !users.contains(old) {
            g.removed.push((old.clone(), now));
        }
    }
    g.removed.retain(|(u, _)| !users.contains(u));
    let mut dedup = Vec::new();
    for u in users {
        if !dedup.contains(&u) {
            dedup.push(u);
        }
    }
    g.users = dedup;
    g.date_update += 1;
    g.updated_by = ADMIN_USER_ID.into();
    let g = st.group(&id).ok_or("no_such_subteam")?;
    // The answer shows the list just written.
    let mut v = group_json(s, g, false);
    v["users"] = json!(g.users);
    v["user_count"] = json!(g.users.len());
    Ok(ok(json!({"usergroup": v})))
}

fn usergroups_disable(s: &Shared, st: &mut State, a: &Args) -> R {
    let id = a.get("usergroup").ok_or("no_such_subteam")?.to_string();
    let g = st
        .groups
        .iter_mut()
        .find(|g| g.id == id)
        .ok_or("no_such_subteam")?;
    if g.disabled_at.is_none() {
        g.disabled_at = Some(Instant::now());
        g.date_update += 1;
    }
    let g = st.group(&id).ok_or("no_such_subteam")?;
    Ok(ok(json!({"usergroup": group_json(s, g, false)})))
}

fn session_json(x: &Session) -> Value {
    let dev = json!({
        "device_hardware": x.device.hardware,
        "os": x.device.os,
        "os_version": x.device.os_version,
        "slack_client_version": x.device.client,
        "ip": x.device.ip,
    });
    json!({
        "user_id": x.user_id,
        "session_id": x.session_id,
        "team_id": TEAM_ID,
        "created": dev,
        "recent": dev,
    })
}

fn session_list(s: &Shared, st: &State, a: &Args) -> R {
    let limit = a.limit(100, 1000)?;
    let offset = a.cursor("session")?;
    if a.get("team_id").is_some_and(|t| t != TEAM_ID) {
        return Err("team_not_found");
    }
    let user = a.get("user_id");
    if user.is_some_and(|u| st.user(u).is_none()) {
        return Err("user_not_found");
    }
    let all: Vec<&Session> = st
        .sessions
        .iter()
        .filter(|x| user.is_none_or(|u| x.user_id == u) && s.still_listed(x.removed_at))
        .collect();
    let (items, meta) = page(&all, offset, limit, "session");
    let items: Vec<Value> = items.into_iter().map(session_json).collect();
    Ok(ok(
        json!({"active_sessions": items, "response_metadata": meta}),
    ))
}

fn session_invalidate(st: &mut State, a: &Args) -> R {
    let team = a.get("team_id").ok_or("invalid_arguments")?;
    if team != TEAM_ID {
        return Err("team_not_found");
    }
    let sid: u64 = a
        .get("session_id")
        .and_then(|s| s.parse().ok())
        .ok_or("invalid_session")?;
    let x = st
        .sessions
        .iter_mut()
        .find(|x| x.session_id == sid)
        .ok_or("invalid_session")?;
    // Invalidating a session already ended is accepted (idempotent).
    x.removed_at.get_or_insert_with(Instant::now);
    Ok(ok(json!({})))
}

fn session_reset(st: &mut State, a: &Args) -> R {
    let user = a.get("user_id").ok_or("invalid_arguments")?.to_string();
    if st.user(&user).is_none() {
        return Err("user_not_found");
    }
    let now = Instant::now();
    for x in st.sessions.iter_mut().filter(|x| x.user_id == user) {
        x.removed_at.get_or_insert(now);
    }
    Ok(ok(json!({})))
}

fn set_regular(st: &mut State, a: &Args) -> R {
    let team = a.get("team_id").ok_or("invalid_arguments")?;
    if team != TEAM_ID {
        return Err("team_not_found");
    }
    let id = a.get("user_id").ok_or("invalid_arguments")?.to_string();
    let u = st
        .users
        .iter_mut()
        .find(|u| u.id == id)
        .ok_or("user_not_found")?;
    if u.is_primary_owner {
        return Err("cannot_modify_primary_owner");
    }
    u.is_admin = false;
    u.is_owner = false;
    Ok(ok(json!({})))
}

fn roles_list(s: &Shared, st: &State, a: &Args) -> R {
    let limit = a.limit(100, 200)?;
    let offset = a.cursor("role")?;
    let role_ids = a.list("role_ids");
    let entity_ids = a.list("entity_ids");
    let mut all: Vec<&RoleAssignment> = st
        .roles
        .iter()
        .filter(|r| s.still_listed(r.removed_at))
        .filter(|r| role_ids.is_empty() || role_ids.contains(&r.role_id))
        .filter(|r| entity_ids.is_empty() || entity_ids.contains(&r.entity_id))
        .collect();
    if a.get("sort_dir") == Some("DESC") {
        all.reverse();
    }
    let (items, meta) = page(&all, offset, limit, "role");
    let items: Vec<Value> = items
        .into_iter()
        .map(|r| {
            json!({"role_id": r.role_id, "entity_id": r.entity_id, "user_id": r.user_id, "date_create": r.date_create})
        })
        .collect();
    Ok(ok(
        json!({"role_assignments": items, "response_metadata": meta}),
    ))
}

fn roles_remove(st: &mut State, a: &Args) -> R {
    let role = a.get("role_id").ok_or("invalid_arguments")?.to_string();
    let entities = a.list("entity_ids");
    let users = a.list("user_ids");
    if entities.is_empty() || users.is_empty() {
        return Err("invalid_arguments");
    }
    let now = Instant::now();
    for r in st.roles.iter_mut().filter(|r| {
        r.role_id == role && entities.contains(&r.entity_id) && users.contains(&r.user_id)
    }) {
        r.removed_at.get_or_insert(now);
    }
    Ok(ok(json!({})))
}

fn apps_uninstall(st: &mut State, a: &Args) -> R {
    let app = a.get("app_id").ok_or("invalid_arguments")?.to_string();
    let teams = a.list("team_ids");
    match (a.get("enterprise_id"), teams.is_empty()) {
        (Some(e), true) if e == ENTERPRISE_ID => {}
        (None, false) if teams.iter().all(|t| t == TEAM_ID) => {}
        (Some(_), false) => return Err("invalid_arguments"),
        _ => return Err("invalid_team"),
    }
    let last = st
        .logs
        .iter()
        .filter(|l| l.app_id == app)
        .max_by_key(|l| l.date)
        .cloned()
        .ok_or("app_not_found")?;
    if last.change_type != "removed" {
        let ts = st.logs.iter().map(|l| l.date).max().unwrap_or(0) + 1;
        st.logs.push(IntegrationLog {
            change_type: "removed",
            user_id: ADMIN_USER_ID.into(),
            user_name: "admin".into(),
            date: ts,
            ..last
        });
    }
    Ok(ok(json!({})))
}

fn integration_logs(st: &State, a: &Args) -> R {
    let count: usize = a
        .get("count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let page_no: usize = a
        .get("page")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut all: Vec<&IntegrationLog> = st
        .logs
        .iter()
        .filter(|l| a.get("user").is_none_or(|u| l.user_id == u))
        .filter(|l| a.get("app_id").is_none_or(|x| l.app_id == x))
        .filter(|l| a.get("change_type").is_none_or(|x| l.change_type == x))
        .collect();
    // Newest first, as Slack lists them.
    all.sort_by_key(|l| std::cmp::Reverse(l.date));
    let total = all.len();
    let pages = total.div_ceil(count).max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page_no - 1) * count)
        .take(count)
        .map(|l| {
            json!({
                "app_id": l.app_id, "app_type": l.app_type, "service_type": l.service_type,
                "change_type": l.change_type, "user_id": l.user_id, "user_name": l.user_name,
                "date": l.date.to_string(), "scope": l.scope,
            })
        })
        .collect();
    Ok(ok(json!({
        "logs": items,
        "paging": {"count": count, "total": total, "page": page_no, "pages": pages},
    })))
}

// ------------------------------------------------------------------- SCIM

/// SCIM errors: v2 in RFC 7644 shape, v1 in Slack's own
/// `{"Errors":{"description","code"}}` shape.
fn scim_error(version: &str, status: StatusCode, detail: &str) -> Response {
    let body = if version == "v1" {
        json!({"Errors": {"description": detail, "code": status.as_u16()}})
    } else {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "detail": detail,
            "status": status.as_u16().to_string(),
        })
    };
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

fn scim_auth(version: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if !matches!(version, "v1" | "v2") {
        return Err(Box::new(scim_error(
            "v2",
            StatusCode::NOT_FOUND,
            "unknown SCIM version",
        )));
    }
    let tok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match tok {
        Some(DEMO_SCIM_TOKEN) => Ok(()),
        Some(_) => Err(Box::new(scim_error(
            version,
            StatusCode::UNAUTHORIZED,
            "invalid_authentication",
        ))),
        None => Err(Box::new(scim_error(
            version,
            StatusCode::UNAUTHORIZED,
            "no_authorization",
        ))),
    }
}

fn scim_user(base: &str, version: &str, u: &User) -> Value {
    let schema = if version == "v1" {
        "urn:scim:schemas:core:1.0"
    } else {
        "urn:ietf:params:scim:schemas:core:2.0:User"
    };
    json!({
        "schemas": [schema],
        "id": u.id,
        "userName": u.name,
        "displayName": u.real_name,
        "name": {"givenName": u.first, "familyName": u.last},
        "emails": [{"value": u.email, "primary": true}],
        "active": !u.deleted,
        "meta": {
            "created": "2024-05-29T16:26:40-07:00",
            "location": format!("{base}/scim/{version}/Users/{}", u.id),
        },
    })
}

async fn scim_list(
    AxState(s): AxState<Shared>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = scim_auth(&version, &headers) {
        return *r;
    }
    let mut start = 1usize;
    let mut count = 100usize;
    let mut filter: Option<String> = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "startIndex" => start = v.parse().unwrap_or(1).max(1),
            "count" => count = v.parse().unwrap_or(100).min(1000),
            "filter" => filter = Some(v.into_owned()),
            _ => {}
        }
    }
    let st = s.slack.lock().expect("slack lock");
    let wanted = filter.as_deref().and_then(|f| {
        let f = f.trim();
        let rest = f
            .strip_prefix("userName eq ")
            .or_else(|| f.strip_prefix("email eq "))?;
        Some(rest.trim_matches('"').to_string())
    });
    let all: Vec<&User> = st
        .users
        .iter()
        .filter(|u| {
            wanted
                .as_deref()
                .is_none_or(|w| u.name == w || u.email.eq_ignore_ascii_case(w))
        })
        .collect();
    let items: Vec<Value> = all
        .iter()
        .skip(start - 1)
        .take(count)
        .map(|u| scim_user(&s.base_url, &version, u))
        .collect();
    Json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": all.len(),
        "itemsPerPage": items.len(),
        "startIndex": start,
        "Resources": items,
    }))
    .into_response()
}

async fn scim_get(
    AxState(s): AxState<Shared>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = scim_auth(&version, &headers) {
        return *r;
    }
    let st = s.slack.lock().expect("slack lock");
    match st.user(&id) {
        Some(u) => Json(scim_user(&s.base_url, &version, u)).into_response(),
        None => scim_error(&version, StatusCode::NOT_FOUND, "User not found"),
    }
}

/// Deactivation: sessions end, the user shows `deleted:true` and SCIM
/// `active:false`. The primary owner cannot be deactivated.
fn deactivate(st: &mut State, id: &str) -> Result<(), (StatusCode, &'static str)> {
    let u = st
        .users
        .iter_mut()
        .find(|u| u.id == id)
        .ok_or((StatusCode::NOT_FOUND, "User not found"))?;
    if u.is_primary_owner {
        return Err((
            StatusCode::FORBIDDEN,
            "The primary owner cannot be deactivated",
        ));
    }
    u.deleted = true;
    let now = Instant::now();
    for x in st.sessions.iter_mut().filter(|x| x.user_id == id) {
        x.removed_at.get_or_insert(now);
    }
    Ok(())
}

async fn scim_patch(
    AxState(s): AxState<Shared>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = scim_auth(&version, &headers) {
        return *r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return scim_error(&version, StatusCode::BAD_REQUEST, "invalid JSON body");
    };
    // v2: PatchOp with Operations; v1: a partial resource {"active":false}.
    let mut active: Option<bool> = v.get("active").and_then(Value::as_bool);
    if let Some(ops) = v.get("Operations").and_then(Value::as_array) {
        let schema_ok = v["schemas"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x == "urn:ietf:params:scim:api:messages:2.0:PatchOp")
        });
        if !schema_ok {
            return scim_error(&version, StatusCode::BAD_REQUEST, "missing PatchOp schema");
        }
        for op in ops {
            let is_replace = op["op"]
                .as_str()
                .is_some_and(|o| o.eq_ignore_ascii_case("replace"));
            if is_replace && op["path"] == "active" {
                active = op["value"].as_bool();
            } else if is_replace && op["value"]["active"].is_boolean() {
                active = op["value"]["active"].as_bool();
            }
        }
    }
    let mut st = s.slack.lock().expect("slack lock");
    match active {
        Some(false) => {
            if let Err((code, msg)) = deactivate(&mut st, &id) {
                return scim_error(&version, code, msg);
            }
        }
        Some(true) => {
            if let Some(u) = st.users.iter_mut().find(|u| u.id == id) {
                u.deleted = false;
            }
        }
        None => {}
    }
    match st.user(&id) {
        Some(u) => Json(scim_user(&s.base_url, &version, u)).into_response(),
        None => scim_error(&version, StatusCode::NOT_FOUND, "User not found"),
    }
}

async fn scim_delete(
    AxState(s): AxState<Shared>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = scim_auth(&version, &headers) {
        return *r;
    }
    let mut st = s.slack.lock().expect("slack lock");
    match deactivate(&mut st, &id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err((code, msg)) => scim_error(&version, code, msg),
    }
}

/// Slack's 429: `{"ok":false,"error":"ratelimited"}` with `Retry-After`.
fn ratelimited(secs: u64) -> Response {
    crate::sandbox::with_retry_after(
        (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response(),
        secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_leaver_has_the_shape_asked_and_the_demo_org_none() {
        let shape = tenant::BenchShape {
            slack_sessions: 9,
            slack_groups: 6,
            ..tenant::BenchShape::default()
        };
        let plain = State::seed();
        assert!(plain.user_by_email(&shape.email).is_none());
        let mut st = State::seed();
        st.seed_bench(&shape);
        let u = st
            .user_by_email(&shape.email)
            .expect("bench leaver")
            .id
            .clone();
        assert_eq!(st.sessions.iter().filter(|s| s.user_id == u).count(), 9);
        let groups: Vec<&UserGroup> = st.groups.iter().filter(|g| g.users.contains(&u)).collect();
        assert_eq!(groups.len(), 6);
        assert!(groups.iter().all(|g| g.users.len() == 2));
        let mut ids: Vec<&str> = st.groups.iter().map(|g| g.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), st.groups.len(), "group ids stay unique");
    }
}
