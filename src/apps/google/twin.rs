//! Google Workspace emulator: the Directory API (users, tokens, asps,
//! verificationCodes, signOut, twoStepVerification, groups, members,
//! customers, roleassignments, roles, mobile devices), the Licensing API,
//! and the OAuth token endpoint for the JWT bearer grant of a service
//! account with domain-wide delegation. Every route takes the global
//! `fields` parameter ([`partial`]), and `POST /batch` ([`batch`]) runs
//! multipart batches through the same router, so unmodified Google clients
//! work against it.
//!
//! Shapes follow the discovery documents (`kind`, `etag`, field names; empty
//! lists omit `items`, as Google does). Lists page with `maxResults` /
//! `pageToken` → `nextPageToken` (opaque, absent at the end). Errors use
//! Google's body. Quotas (per caller and per project) are answered as Google
//! does: 403 `userRateLimitExceeded`, 429 `rateLimitExceeded`.
//! Removed tokens, ASPs, memberships, role assignments and licenses stay
//! readable for the consistency delay; so does a suspension's absence.

// Handlers bail out with a finished error response; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::sandbox::tenant::{self, Scenario};
use crate::sandbox::{DEMO_ADMIN, SandboxState, Shared};

/// The emulated customer's id (`my_customer` is accepted too).
pub const CUSTOMER_ID: &str = "C03az79cb";
/// A user whose address needs percent-encoding in a URL path (`'`, `/`, `#`,
/// `?` are all valid in an address's local part).
pub const ODD_EMAIL: &str = "o'brien/ops#1?x@example.com";
/// Google's documented token endpoint, the `aud` its clients sign.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The emulated customer's primary domain.
pub const CUSTOMER_DOMAIN: &str = "example.com";
/// Lifetime of issued access tokens.
pub const TOKEN_TTL_SECS: u64 = 3600;

#[derive(Debug)]
pub struct User {
    pub id: String,
    pub primary_email: String,
    pub aliases: Vec<String>,
    /// `nonEditableAliases`: aliases outside the customer's domains.
    pub non_editable_aliases: Vec<String>,
    pub given: String,
    pub family: String,
    pub org_unit: String,
    pub is_admin: bool,
    pub is_delegated_admin: bool,
    pub suspended: bool,
    /// When a suspension was written through the API (None: seeded).
    pub suspended_at: Option<Instant>,
    pub suspension_reason: Option<String>,
    pub last_login: String,
    pub creation: String,
    pub backup_codes: Vec<String>,
    /// Enrolled in 2-Step Verification (`isEnrolledIn2Sv`).
    pub two_sv: bool,
    /// How many times `signOut` was called.
    pub sign_outs: u32,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug)]
pub struct Membership {
    pub group: usize,
    pub user: usize,
    pub removed_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Token {
    pub user: usize,
    pub client_id: String,
    pub display_text: String,
    pub scopes: Vec<String>,
    pub native_app: bool,
    pub removed_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Asp {
    pub user: usize,
    pub code_id: i64,
    pub name: String,
    pub creation_time: i64,
    pub last_time_used: i64,
    pub removed_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    pub super_admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    User(usize),
    Group(usize),
}

#[derive(Debug)]
pub struct Assignment {
    pub id: String,
    pub role: usize,
    pub assignee: Assignee,
    pub removed_at: Option<Instant>,
}

#[derive(Debug)]
pub struct License {
    pub user: usize,
    pub product_id: String,
    pub sku_id: String,
    pub product_name: String,
    pub sku_name: String,
    pub removed_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Device {
    pub resource_id: String,
    pub device_id: String,
    pub user: usize,
    pub model: String,
    pub os: String,
    pub kind: String,
    pub status: String,
    pub first_sync: String,
    pub last_sync: String,
    /// An action written through the API, and when (its status shows once
    /// the consistency delay has passed).
    pub action: Option<(String, Instant)>,
}

struct Issued {
    expires: Instant,
    /// Whom the token acts as (the delegated admin): Google counts the
    /// per-user quota against the caller, not the user a request is about.
    subject: String,
    /// The scopes asked for in the assertion (all granted, or none).
    scopes: Vec<String>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The emulated Google tenant.
#[derive(Default)]
pub struct State {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub memberships: Vec<Membership>,
    pub tokens: Vec<Token>,
    pub asps: Vec<Asp>,
    pub roles: Vec<Role>,
    pub assignments: Vec<Assignment>,
    pub licenses: Vec<License>,
    pub devices: Vec<Device>,
    /// Answer every request that carries a page token with a 503 (to test
    /// a listing that fails in the middle).
    pub fail_paged_requests: bool,
    /// Pages of at most this many items (at least 2), each next page
    /// starting again with the last item of the page before: a listing
    /// that shifts while it is read, so one item shows on two pages.
    pub page_overlap: Option<usize>,
    /// Data transfers requested (`datatransfer/v1/transfers`).
    pub transfers: Vec<transfer::Transfer>,
    /// While set, every transfer stays `inProgress`.
    pub hold_transfers: bool,
    /// How long a transfer takes to complete (default: the consistency
    /// delay).
    pub transfer_delay: Option<std::time::Duration>,
    transfer_seq: u64,
    issued: HashMap<String, Issued>,
    cursors: HashMap<String, (String, usize)>,
    quota: HashMap<String, Bucket>,
    /// The project's quota bucket (the one demo service account's project).
    project_quota: Option<Bucket>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("google::State")
            .field("users", &self.users.len())
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

/// Third-party apps users have granted access to.
const APPS: &[(&str, &str, &[&str], bool)] = &[
    (
        "861937208813-zoomcal8q3v1n0bq4kz2.apps.googleusercontent.com",
        "Zoom",
        &[
            "https://www.googleapis.com/auth/calendar.readonly",
            "https://www.googleapis.com/auth/userinfo.email",
        ],
        false,
    ),
    (
        "1093462873612-slackdrv4hk29dm1ce7.apps.googleusercontent.com",
        "Slack",
        &[
            "openid",
            "https://www.googleapis.com/auth/userinfo.email",
            "https://www.googleapis.com/auth/drive.readonly",
        ],
        false,
    ),
    (
        "550213740981-mailmergepro7tq2bx.apps.googleusercontent.com",
        "Mail Merge Pro",
        &[
            "https://mail.google.com/",
            "https://www.googleapis.com/auth/drive",
        ],
        false,
    ),
    (
        "228374650192-notionimport3xv8w.apps.googleusercontent.com",
        "Notion",
        &["https://www.googleapis.com/auth/drive.readonly"],
        false,
    ),
    (
        "604391876315-gamadv0xtd9b2r1yq.apps.googleusercontent.com",
        "GAM",
        &[
            "https://www.googleapis.com/auth/admin.directory.user",
            "https://www.googleapis.com/auth/admin.directory.group",
        ],
        true,
    ),
    (
        "32555940559.apps.googleusercontent.com",
        "Google Cloud SDK",
        &["https://www.googleapis.com/auth/cloud-platform"],
        true,
    ),
    (
        "917203846651-docusignconn5pq0.apps.googleusercontent.com",
        "DocuSign",
        &["https://www.googleapis.com/auth/drive.file"],
        false,
    ),
    (
        "470118263904-calendlysync2m8r.apps.googleusercontent.com",
        "Calendly",
        &["https://www.googleapis.com/auth/calendar"],
        false,
    ),
];
const ZOOM: usize = 0;
const SLACK: usize = 1;
const MAIL_MERGE: usize = 2;
const NOTION: usize = 3;
const GAM: usize = 4;
const GCLOUD: usize = 5;
const DOCUSIGN: usize = 6;
const CALENDLY: usize = 7;

const OTHER_GROUPS: &[&str] = &[
    "it-admins",
    "security-team",
    "finance-approvers",
    "sales-emea",
    "sales-na",
    "campaigns",
    "oncall",
    "design",
    "board-reporting",
    "payroll",
    "legal-contracts",
    "support-tier2",
    "eng-platform",
    "eng-mobile",
    "eng-data",
    "release-managers",
    "hiring",
    "social",
    "book-club",
    "travel",
    "benefits",
    "it-helpdesk",
    "vendor-mgmt",
    "okr-owners",
    "press",
    "events",
    "customer-advisory",
    "partners",
    "security-incidents",
    "audit",
    "contractors",
];

/// (roleName, description, super admin)
const ROLES: &[(&str, &str, bool)] = &[
    ("_SEED_ADMIN_ROLE", "Super Admin", true),
    ("_GROUPS_ADMIN_ROLE", "Groups Admin", false),
    (
        "_USER_MANAGEMENT_ADMIN_ROLE",
        "User Management Admin",
        false,
    ),
    ("_HELP_DESK_ADMIN_ROLE", "Help Desk Admin", false),
    ("_SERVICES_ADMIN_ROLE", "Services Admin", false),
    ("_MOBILE_ADMIN_ROLE", "Mobile Admin", false),
];
const ROLE_SUPER: usize = 0;
const ROLE_GROUPS: usize = 1;
const ROLE_USERS: usize = 2;
const ROLE_HELPDESK: usize = 3;
const ROLE_SERVICES: usize = 4;

/// (productId, skuId, productName, skuName)
const SKUS: &[(&str, &str, &str, &str)] = &[
    (
        "Google-Apps",
        "1010020020",
        "Google Workspace",
        "Google Workspace Enterprise Plus",
    ),
    (
        "Google-Apps",
        "1010020028",
        "Google Workspace",
        "Google Workspace Business Starter",
    ),
    (
        "Google-Apps",
        "1010020025",
        "Google Workspace",
        "Google Workspace Business Plus",
    ),
    (
        "Google-Vault",
        "Google-Vault",
        "Google Vault",
        "Google Vault",
    ),
];
const SKU_ENTERPRISE: usize = 0;
const SKU_STARTER: usize = 1;
const SKU_BUSINESS: usize = 2;
const SKU_VAULT: usize = 3;

/// A stable etag from some text (Google etags are quoted opaque strings).
fn etag(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("\"{h:016x}/sandbox\"")
}

fn date(n: u32, base_day: u32) -> String {
    let day = 1 + (n + base_day) % 28;
    let month = 1 + (n / 3) % 12;
    format!(
        "2025-{month:02}-{day:02}T{:02}:{:02}:00.000Z",
        8 + n % 10,
        (n * 7) % 60
    )
}

impl State {
    /// The deterministic demo tenant (plus a benchmark leaver when asked).
    pub fn seed(bench: Option<&tenant::BenchShape>) -> Self {
        let mut s = State::default();
        for (i, (name, desc, sup)) in ROLES.iter().enumerate() {
            s.roles.push(Role {
                id: format!("9144745340903{:04}", 4752 + i),
                name: (*name).to_string(),
                description: (*desc).to_string(),
                super_admin: *sup,
            });
        }
        for d in tenant::DEPARTMENTS {
            s.add_group(&d.to_lowercase(), d);
        }
        s.add_group("all-staff", "All staff");
        for g in OTHER_GROUPS {
            let name = g.replace('-', " ");
            s.add_group(g, &name);
        }

        let admin = s.add_user(DEMO_ADMIN, "Avery", "Admin", "/IT", 10_000, &[]);
        s.users[admin].is_admin = true;
        s.assign(ROLE_SUPER, Assignee::User(admin));
        s.join(admin, "it-admins");

        for p in tenant::people().into_iter().chain(tenant::crowd(bench)) {
            if p.scenario == Some(Scenario::SlackOnlyContractor) {
                continue;
            }
            let org = if p.scenario == Some(Scenario::Contractor) {
                "/Contractors".to_string()
            } else {
                format!("/{}", p.department)
            };
            let aliases: Vec<&str> = p.aliases.iter().map(String::as_str).collect();
            let u = s.add_user(&p.email, &p.first, &p.last, &org, p.n, &aliases);
            if p.scenario == Some(Scenario::DifferentEmail) {
                // An address from a domain the customer no longer owns.
                s.users[u]
                    .non_editable_aliases
                    .push("alex.chen@legacy.example.org".to_string());
            }
            let dept = p.department.to_lowercase();
            match p.scenario {
                None => s.seed_crowd(u, p.n, &dept),
                Some(sc) => s.seed_leaver(u, sc, &dept),
            }
        }

        let odd = s.add_user(ODD_EMAIL, "Kim", "O'Brien", "/Operations", 900, &[]);
        s.join(odd, "operations");
        s.grant_app(odd, SLACK);
        s.add_asp(odd, "Legacy IMAP client");
        s.license(odd, SKU_BUSINESS);

        if let Some(b) = bench {
            s.seed_bench(b);
        }
        s
    }

    fn add_group(&mut self, local: &str, name: &str) -> usize {
        let i = self.groups.len();
        self.groups.push(Group {
            id: format!("01ci93xb{:09}", 3_000_000 + i * 7919),
            email: format!("{local}@example.com"),
            name: name.to_string(),
        });
        i
    }

    fn add_user(
        &mut self,
        email: &str,
        given: &str,
        family: &str,
        org: &str,
        n: u32,
        aliases: &[&str],
    ) -> usize {
        let i = self.users.len();
        self.users.push(User {
            id: format!("1{:020}", 1_157_000_000_000u64 + u64::from(n) * 104_729),
            primary_email: email.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            non_editable_aliases: Vec::new(),
            given: given.to_string(),
            family: family.to_string(),
            org_unit: org.to_string(),
            is_admin: false,
            is_delegated_admin: false,
            suspended: false,
            suspended_at: None,
            suspension_reason: None,
            last_login: date(n, 3),
            creation: date(n, 11).replace("2025", "2021"),
            backup_codes: Vec::new(),
            two_sv: false,
            sign_outs: 0,
        });
        i
    }

    fn group_by_local(&self, local: &str) -> usize {
        let email = format!("{local}@example.com");
        self.groups
            .iter()
            .position(|g| g.email == email)
            .unwrap_or_else(|| panic!("seed group {local} exists"))
    }

    fn join(&mut self, user: usize, local: &str) {
        let group = self.group_by_local(local);
        self.memberships.push(Membership {
            group,
            user,
            removed_at: None,
        });
    }

    fn grant_app(&mut self, user: usize, app: usize) {
        let (client_id, text, scopes, native) = APPS[app];
        self.tokens.push(Token {
            user,
            client_id: client_id.to_string(),
            display_text: text.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            native_app: native,
            removed_at: None,
        });
    }

    fn add_asp(&mut self, user: usize, name: &str) {
        let code_id = 1000 + self.asps.len() as i64 * 17;
        let creation_time = 1_700_000_000_000 + code_id * 86_400_000;
        self.asps.push(Asp {
            user,
            code_id,
            name: name.to_string(),
            creation_time,
            last_time_used: creation_time + 5 * 86_400_000,
            removed_at: None,
        });
    }

    fn give_codes(&mut self, user: usize) {
        let seed = self.users[user].id.clone();
        self.users[user].two_sv = true;
        self.users[user].backup_codes = (0..10)
            .map(|k| {
                let digits: String = seed
                    .bytes()
                    .rev()
                    .skip(k)
                    .take(8)
                    .map(|b| char::from(b'0' + (b + k as u8) % 10))
                    .collect();
                digits
            })
            .collect();
    }

    fn license(&mut self, user: usize, sku: usize) {
        let (p, s, pn, sn) = SKUS[sku];
        self.licenses.push(License {
            user,
            product_id: p.to_string(),
            sku_id: s.to_string(),
            product_name: pn.to_string(),
            sku_name: sn.to_string(),
            removed_at: None,
        });
    }

    fn device(&mut self, user: usize, model: &str, os: &str, kind: &str) {
        let n = self.devices.len();
        let u = &self.users[user];
        self.devices.push(Device {
            resource_id: format!("AFiQxQ8{:012}", 41_000_000 + n * 7_717),
            device_id: format!("{:016x}", 0x3c1f_0000_0000_0000u64 + n as u64 * 0x9e37),
            user,
            model: model.to_string(),
            os: os.to_string(),
            kind: kind.to_string(),
            status: "APPROVED".into(),
            first_sync: u.creation.clone(),
            last_sync: u.last_login.clone(),
            action: None,
        });
    }

    fn assign(&mut self, role: usize, assignee: Assignee) {
        let id = format!("91447453409{:06}", 35_000 + self.assignments.len() * 31);
        self.assignments.push(Assignment {
            id,
            role,
            assignee,
            removed_at: None,
        });
    }

    fn seed_crowd(&mut self, u: usize, n: u32, dept: &str) {
        self.join(u, dept);
        self.join(u, "all-staff");
        if n.is_multiple_of(2) {
            self.join(u, OTHER_GROUPS[(n as usize / 2) % OTHER_GROUPS.len()]);
        }
        if n.is_multiple_of(3) {
            self.grant_app(u, ZOOM);
        }
        if n % 4 == 1 {
            self.grant_app(u, SLACK);
        }
        if n % 5 == 2 {
            self.grant_app(u, NOTION);
        }
        if n.is_multiple_of(17) {
            self.add_asp(u, "Thunderbird");
        }
        if n.is_multiple_of(6) {
            self.give_codes(u);
        }
        if n.is_multiple_of(3) {
            self.device(u, "Pixel 8", "Android 15", "ANDROID");
        }
        self.license(
            u,
            if n.is_multiple_of(10) {
                SKU_ENTERPRISE
            } else {
                SKU_BUSINESS
            },
        );
    }

    fn seed_leaver(&mut self, u: usize, sc: Scenario, dept: &str) {
        match sc {
            Scenario::Scheduled => {
                for g in [
                    dept,
                    "all-staff",
                    "finance-approvers",
                    "payroll",
                    "board-reporting",
                    "okr-owners",
                    "audit",
                    "benefits",
                    "travel",
                    "social",
                    "hiring",
                    "events",
                ] {
                    self.join(u, g);
                }
                for a in [ZOOM, SLACK, MAIL_MERGE, NOTION, DOCUSIGN, CALENDLY] {
                    self.grant_app(u, a);
                }
                self.add_asp(u, "Outlook on old laptop");
                self.add_asp(u, "iPhone Mail");
                self.give_codes(u);
                self.license(u, SKU_ENTERPRISE);
                self.license(u, SKU_VAULT);
                self.device(u, "iPhone 15", "iOS 18.2", "IOS_SYNC");
                self.device(u, "Galaxy S24", "Android 14", "ANDROID");
                self.assign(ROLE_HELPDESK, Assignee::User(u));
            }
            Scenario::UrgentTermination => {
                self.users[u].is_delegated_admin = true;
                for g in [
                    dept,
                    "all-staff",
                    "it-admins",
                    "security-team",
                    "oncall",
                    "release-managers",
                    "eng-platform",
                ] {
                    self.join(u, g);
                }
                self.assign(ROLE_USERS, Assignee::User(u));
                self.assign(ROLE_GROUPS, Assignee::User(u));
                let it = self.group_by_local("it-admins");
                self.assign(ROLE_SERVICES, Assignee::Group(it));
                for a in [GAM, GCLOUD, SLACK, ZOOM, MAIL_MERGE] {
                    self.grant_app(u, a);
                }
                self.add_asp(u, "cron sync script");
                self.give_codes(u);
                self.license(u, SKU_ENTERPRISE);
                self.device(u, "Pixel 9 Pro", "Android 15", "ANDROID");
            }
            Scenario::Contractor => {
                self.join(u, "contractors");
                self.join(u, "eng-data");
                self.grant_app(u, SLACK);
                self.license(u, SKU_STARTER);
            }
            Scenario::Mover => {
                for g in [
                    "sales",
                    "sales-emea",
                    "customer-advisory",
                    "marketing",
                    "campaigns",
                    "events",
                    "all-staff",
                ] {
                    self.join(u, g);
                }
                self.grant_app(u, ZOOM);
                self.grant_app(u, CALENDLY);
                self.license(u, SKU_BUSINESS);
                self.device(u, "iPhone 14", "iOS 17.6", "IOS_SYNC");
            }
            Scenario::AlreadySuspended => {
                let user = &mut self.users[u];
                user.suspended = true;
                user.suspension_reason = Some("ADMIN".into());
                for g in [dept, "all-staff", "eng-mobile"] {
                    self.join(u, g);
                }
                for a in [SLACK, NOTION, GCLOUD] {
                    self.grant_app(u, a);
                }
                self.add_asp(u, "Apple Mail");
                self.add_asp(u, "CalDAV sync");
                self.give_codes(u);
                self.license(u, SKU_BUSINESS);
                self.device(u, "iPad Air", "iPadOS 17.5", "IOS_SYNC");
            }
            Scenario::DifferentEmail => {
                for g in [dept, "all-staff", "partners"] {
                    self.join(u, g);
                }
                self.grant_app(u, ZOOM);
                self.grant_app(u, DOCUSIGN);
                self.license(u, SKU_BUSINESS);
            }
            Scenario::SlackOnlyContractor => {}
        }
    }

    fn seed_bench(&mut self, b: &tenant::BenchShape) {
        let u = self.add_user(&b.email, "Bench", "Leaver", "/Engineering", 5000, &[]);
        for i in 0..b.groups {
            let local = format!("bench-{i:04}");
            let g = self.add_group(&local, &format!("Bench group {i}"));
            self.memberships.push(Membership {
                group: g,
                user: u,
                removed_at: None,
            });
        }
        for i in 0..b.tokens {
            self.tokens.push(Token {
                user: u,
                client_id: format!("{:012}-bench{i:05}.apps.googleusercontent.com", 700_000 + i),
                display_text: format!("Bench app {i}"),
                scopes: vec!["https://www.googleapis.com/auth/drive.readonly".into()],
                native_app: false,
                removed_at: None,
            });
        }
        for i in 0..b.app_passwords {
            self.add_asp(u, &format!("Bench device {i}"));
        }
        self.give_codes(u);
        self.license(u, SKU_BUSINESS);
    }

    /// A user by primary email, alias or id (case-insensitive for emails).
    pub fn user_index(&self, key: &str) -> Option<usize> {
        let k = key.trim();
        self.users.iter().position(|u| {
            u.id == k
                || u.primary_email.eq_ignore_ascii_case(k)
                || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(k))
                || u.non_editable_aliases
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(k))
        })
    }

    fn group_index(&self, key: &str) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.id == key || g.email.eq_ignore_ascii_case(key))
    }

    /// Checks the bearer token; returns whom it acts as.
    fn check_auth(&mut self, headers: &HeaderMap) -> Result<String, Response> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let caller = token
            .and_then(|t| self.issued.get(t))
            .filter(|i| i.expires > Instant::now())
            .map(|i| i.subject.clone());
        if let Some(caller) = caller {
            Ok(caller)
        } else {
            let mut r = google_error(
                StatusCode::UNAUTHORIZED,
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
            r.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static(
                    "Bearer realm=\"https://accounts.google.com/\"",
                ),
            );
            Err(r)
        }
    }

    /// Google's Admin SDK quotas, each a token bucket refilled at
    /// `per_min / 60` a second holding at most one second's worth (so a
    /// client that backs off gets through within seconds): per user, the
    /// caller a token acts as, answered 403 `userRateLimitExceeded`; per
    /// project, every caller of the service account's project together,
    /// answered 429 `rateLimitExceeded` (`RESOURCE_EXHAUSTED`). A request
    /// refused by one takes nothing from the other.
    fn take_quota(
        &mut self,
        caller: &str,
        per_user: Option<u32>,
        per_project: Option<u32>,
    ) -> Result<(), Response> {
        let now = Instant::now();
        let refill = |b: &mut Bucket, per_min: u32| {
            let rate = f64::from(per_min.max(1)) / 60.0;
            b.tokens =
                (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate.max(1.0));
            b.last = now;
            b.tokens >= 1.0
        };
        let full = |per_min: u32| Bucket {
            tokens: (f64::from(per_min.max(1)) / 60.0).max(1.0),
            last: now,
        };
        if let Some(q) = per_user {
            let b = self
                .quota
                .entry(caller.to_string())
                .or_insert_with(|| full(q));
            if !refill(b, q) {
                return Err(google_error(
                    StatusCode::FORBIDDEN,
                    "userRateLimitExceeded",
                    "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'admin.googleapis.com' for consumer 'project_number:100000000001'.",
                ));
            }
        }
        if let Some(q) = per_project {
            let b = self.project_quota.get_or_insert_with(|| full(q));
            if !refill(b, q) {
                return Err(google_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rateLimitExceeded",
                    "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'admin.googleapis.com' for consumer 'project_number:100000000001'.",
                ));
            }
            b.tokens -= 1.0;
        }
        if per_user.is_some()
            && let Some(b) = self.quota.get_mut(caller)
        {
            b.tokens -= 1.0;
        }
        Ok(())
    }

    /// One page of a listing of `total` items: the index range and the next
    /// page token (opaque, absent at the end).
    fn page(
        &mut self,
        listing: &str,
        total: usize,
        max: usize,
        token: Option<&str>,
    ) -> Result<(std::ops::Range<usize>, Option<String>), Response> {
        let start = match token.filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => match self.cursors.get(t) {
                Some((l, off)) if l == listing => *off,
                _ => {
                    return Err(google_error(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        "Invalid page token",
                    ));
                }
            },
        };
        let start = start.min(total);
        let max = self.page_overlap.map_or(max, |n| max.min(n.max(2)));
        let end = (start + max.max(1)).min(total);
        // With the overlap fault, the next page repeats this one's last item.
        let resume = match self.page_overlap {
            Some(_) if end - start > 1 => end - 1,
            _ => end,
        };
        let next = (end < total).then(|| {
            if self.cursors.len() > 100_000 {
                self.cursors.clear();
            }
            let t = format!("{:032x}", rand::random::<u128>());
            let t = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, t);
            self.cursors
                .insert(t.clone(), (listing.to_string(), resume));
            t
        });
        Ok((start..end, next))
    }

    /// Whether the user is shown as suspended (a suspension written through
    /// the API shows after the consistency delay).
    fn shows_suspended(&self, s: &SandboxState, u: usize) -> bool {
        let u = &self.users[u];
        u.suspended && !u.suspended_at.is_some_and(|t| s.still_listed(Some(t)))
    }

    fn user_json(&self, s: &SandboxState, i: usize) -> Value {
        let u = &self.users[i];
        let suspended = self.shows_suspended(s, i);
        let mut v = json!({
            "kind": "admin#directory#user",
            "id": u.id,
            "etag": etag(&[&u.id, if suspended { "s" } else { "a" }]),
            "primaryEmail": u.primary_email,
            "name": {
                "givenName": u.given,
                "familyName": u.family,
                "fullName": format!("{} {}", u.given, u.family),
            },
            "isAdmin": u.is_admin,
            "isDelegatedAdmin": u.is_delegated_admin,
            "lastLoginTime": u.last_login,
            "creationTime": u.creation,
            "agreedToTerms": true,
            "suspended": suspended,
            "archived": false,
            "changePasswordAtNextLogin": false,
            "ipWhitelisted": false,
            "emails": [{"address": u.primary_email, "primary": true}],
            "customerId": CUSTOMER_ID,
            "orgUnitPath": u.org_unit,
            "isMailboxSetup": true,
            "isEnrolledIn2Sv": u.two_sv,
            "isEnforcedIn2Sv": false,
            "includeInGlobalAddressList": true,
        });
        if suspended {
            v["suspensionReason"] = json!(u.suspension_reason.as_deref().unwrap_or("ADMIN"));
        }
        if !u.aliases.is_empty() {
            v["aliases"] = json!(u.aliases);
        }
        if !u.non_editable_aliases.is_empty() {
            v["nonEditableAliases"] = json!(u.non_editable_aliases);
        }
        v
    }

    fn group_json(&self, g: usize) -> Value {
        let gr = &self.groups[g];
        let count = self
            .memberships
            .iter()
            .filter(|m| m.group == g && m.removed_at.is_none())
            .count();
        json!({
            "kind": "admin#directory#group",
            "id": gr.id,
            "etag": etag(&[&gr.id, &count.to_string()]),
            "email": gr.email,
            "name": gr.name,
            "directMembersCount": count.to_string(),
            "description": "",
            "adminCreated": true,
        })
    }
}

/// An empty 204 answer (Google's answer to DELETE and body-less POSTs).
fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_found(what: &str) -> Response {
    google_error(
        StatusCode::NOT_FOUND,
        "notFound",
        &format!("Resource Not Found: {what}"),
    )
}

fn bad_request(msg: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, "invalid", msg)
}

/// Checks the bearer token and the quotas. Returns the locked state.
fn guard<'a>(
    s: &'a SandboxState,
    headers: &HeaderMap,
    paged: bool,
) -> Result<std::sync::MutexGuard<'a, State>, Response> {
    let f = s.faults();
    let mut g = s.google.lock().expect("google state lock");
    let caller = g.check_auth(headers)?;
    g.take_quota(
        &caller,
        f.google_user_quota_per_min,
        f.google_project_quota_per_min,
    )?;
    if paged && g.fail_paged_requests {
        return Err(google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "backendError",
            "Backend Error",
        ));
    }
    Ok(g)
}

macro_rules! guard {
    ($s:expr, $h:expr) => {
        guard!($s, $h, false)
    };
    ($s:expr, $h:expr, $paged:expr) => {
        match guard(&$s, &$h, $paged) {
            Ok(g) => g,
            Err(r) => return r,
        }
    };
}

const D: &str = "/admin/directory/v1";

pub mod transfer;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/token", post(token))
        .route(&format!("{D}/users"), get(list_users))
        .route(
            &format!("{D}/users/{{userKey}}/makeAdmin"),
            post(make_admin),
        )
        .route(
            &format!("{D}/users/{{userKey}}"),
            get(get_user).patch(patch_user).put(patch_user),
        )
        .route(
            &format!("{D}/users/{{userKey}}/twoStepVerification/turnOff"),
            post(turn_off_2sv),
        )
        .route(&format!("{D}/users/{{userKey}}/tokens"), get(list_tokens))
        .route(
            &format!("{D}/users/{{userKey}}/tokens/{{clientId}}"),
            get(get_token).delete(delete_token),
        )
        .route(&format!("{D}/users/{{userKey}}/asps"), get(list_asps))
        .route(
            &format!("{D}/users/{{userKey}}/asps/{{codeId}}"),
            get(get_asp).delete(delete_asp),
        )
        .route(
            &format!("{D}/users/{{userKey}}/verificationCodes"),
            get(list_codes),
        )
        .route(
            &format!("{D}/users/{{userKey}}/verificationCodes/invalidate"),
            post(invalidate_codes),
        )
        .route(&format!("{D}/users/{{userKey}}/signOut"), post(sign_out))
        .route(&format!("{D}/groups"), get(list_groups))
        .route(&format!("{D}/groups/{{groupKey}}"), get(get_group))
        .route(
            &format!("{D}/groups/{{groupKey}}/members/{{memberKey}}"),
            get(get_member).delete(delete_member),
        )
        .route(
            &format!("{D}/groups/{{groupKey}}/hasMember/{{memberKey}}"),
            get(has_member),
        )
        .route(&format!("{D}/customers/{{customerKey}}"), get(get_customer))
        .route(
            &format!("{D}/customer/{{customer}}/roleassignments"),
            get(list_assignments),
        )
        .route(
            &format!("{D}/customer/{{customer}}/roleassignments/{{id}}"),
            axum::routing::delete(delete_assignment),
        )
        .route(&format!("{D}/customer/{{customer}}/roles"), get(list_roles))
        .route(
            &format!("{D}/customer/{{customer}}/devices/mobile"),
            get(list_devices),
        )
        .route(
            &format!("{D}/customer/{{customer}}/devices/mobile/{{resourceId}}/action"),
            post(device_action),
        )
        .route(
            "/apps/licensing/v1/product/{productId}/sku/{skuId}/user/{userId}",
            get(get_license).delete(delete_license),
        )
        .route(
            "/apps/licensing/v1/product/{productId}/sku/{skuId}/users",
            get(list_licenses_for_sku),
        )
        .route(
            "/apps/licensing/v1/product/{productId}/users",
            get(list_licenses_for_product),
        )
        .route("/batch", post(batch::batch))
        .merge(transfer::add(Router::new()))
        .route_layer(axum::middleware::from_fn(partial::partial_response))
}

// ---- scopes -----------------------------------------------------------------

const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// The scopes (any one suffices) Google documents for each emulated call.
fn required_scopes(method: &axum::http::Method, path: &str) -> &'static [&'static str] {
    let read = method == axum::http::Method::GET;
    let under = |p: &str| path.starts_with(&format!("{D}{p}"));
    if path.starts_with("/apps/licensing/") {
        &["apps.licensing"]
    } else if path.starts_with(transfer::T) {
        if read {
            &["admin.datatransfer", "admin.datatransfer.readonly"]
        } else {
            &["admin.datatransfer"]
        }
    } else if under("/users/{userKey}/tokens")
        || under("/users/{userKey}/asps")
        || under("/users/{userKey}/verificationCodes")
        || under("/users/{userKey}/signOut")
        || under("/users/{userKey}/twoStepVerification")
    {
        &["admin.directory.user.security"]
    } else if under("/users/") || path == format!("{D}/users") {
        if read {
            &["admin.directory.user", "admin.directory.user.readonly"]
        } else {
            &["admin.directory.user"]
        }
    } else if (under("/groups/{groupKey}/members") && read) || under("/groups/{groupKey}/hasMember")
    {
        &[
            "admin.directory.group.member.readonly",
            "admin.directory.group.member",
            "admin.directory.group.readonly",
            "admin.directory.group",
        ]
    } else if under("/groups/{groupKey}/members") {
        &["admin.directory.group.member", "admin.directory.group"]
    } else if under("/customers/") {
        if read {
            &[
                "admin.directory.customer",
                "admin.directory.customer.readonly",
            ]
        } else {
            &["admin.directory.customer"]
        }
    } else if under("/groups") {
        &[
            "admin.directory.group.readonly",
            "admin.directory.group",
            "admin.directory.group.member.readonly",
            "admin.directory.group.member",
        ]
    } else if under("/customer/{customer}/role") {
        if read {
            &[
                "admin.directory.rolemanagement",
                "admin.directory.rolemanagement.readonly",
            ]
        } else {
            &["admin.directory.rolemanagement"]
        }
    } else if under("/customer/{customer}/devices/mobile") {
        if read {
            &[
                "admin.directory.device.mobile.readonly",
                "admin.directory.device.mobile",
            ]
        } else {
            &[
                "admin.directory.device.mobile.action",
                "admin.directory.device.mobile",
            ]
        }
    } else {
        &[]
    }
}

/// Route layer: a known token without a scope the call needs gets Google's
/// 403 `insufficientPermissions` (unknown tokens are left to the handlers'
/// 401).
pub async fn scope_check(
    AxState(s): AxState<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let need = required_scopes(req.method(), &path);
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    if !need.is_empty()
        && let Some(t) = token
    {
        let g = s.google.lock().expect("google state lock");
        if let Some(i) = g.issued.get(&t)
            && !need
                .iter()
                .any(|n| i.scopes.iter().any(|x| x == &format!("{SCOPE_PREFIX}{n}")))
        {
            let mut r = google_error(
                StatusCode::FORBIDDEN,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
            );
            let wanted = need
                .iter()
                .map(|n| format!("{SCOPE_PREFIX}{n}"))
                .collect::<Vec<_>>()
                .join(" ");
            if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
                "Bearer realm=\"https://accounts.google.com/\", error=\"insufficient_scope\", scope=\"{wanted}\""
            )) {
                r.headers_mut().insert("www-authenticate", v);
            }
            return r;
        }
    }
    next.run(req).await
}

// ---- token endpoint -------------------------------------------------------

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    assertion: Option<String>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    sub: Option<String>,
    scope: Option<String>,
    iat: i64,
    exp: i64,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(AxState(s): AxState<Shared>, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type.as_deref() != Some(crate::auth::jwt::GRANT_TYPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: expected urn:ietf:params:oauth:grant-type:jwt-bearer",
        );
    }
    let Some(assertion) = form.assertion.filter(|a| !a.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let key = match jsonwebtoken::DecodingKey::from_rsa_pem(super::DEMO_PUBLIC_KEY.as_bytes()) {
        Ok(k) => k,
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "key"),
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // Google's client libraries sign Google's documented token URL as the
    // audience whatever URL they post to; the sandbox's own URL is accepted
    // too.
    v.set_audience(&[format!("{}/token", s.base_url).as_str(), GOOGLE_TOKEN_URL]);
    v.set_issuer(&[super::DEMO_CLIENT_EMAIL]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    v.leeway = 60;
    let claims = match jsonwebtoken::decode::<AssertionClaims>(&assertion, &key, &v) {
        Ok(d) => d.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            let msg = match e.kind() {
                K::InvalidSignature => "Invalid JWT Signature.",
                K::ExpiredSignature | K::ImmatureSignature => {
                    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
                }
                K::InvalidAudience => "Invalid JWT: Failed audience check.",
                K::InvalidIssuer => "Invalid grant: account not found",
                K::InvalidAlgorithm => "Invalid JWT: the algorithm must be RS256.",
                _ => "Invalid JWT.",
            };
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", msg);
        }
    };
    let now = chrono::Utc::now().timestamp();
    if claims.iat > now + 60 || claims.exp - claims.iat > 3600 || claims.exp <= claims.iat {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if claims.scope.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    let asked: Vec<String> = claims
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // Domain-wide delegation is all or nothing: one scope the client is not
    // authorised for refuses the whole request.
    let withheld = s
        .oauth
        .lock()
        .expect("oauth lock")
        .settings
        .withhold_scopes
        .clone();
    if asked.iter().any(|a| withheld.contains(a)) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    }
    let mut g = s.google.lock().expect("google state lock");
    let Some(sub) = claims.sub.as_deref() else {
        // No subject: the service account itself, which holds no Admin SDK
        // rights in this tenant.
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    };
    let Some(u) = g.user_index(sub) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid email or User ID",
        );
    };
    let user = &g.users[u];
    if !(user.is_admin || user.is_delegated_admin) || user.suspended {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    }
    let token = format!("ya29.sandbox.{:032x}", rand::random::<u128>());
    let now = Instant::now();
    g.issued.retain(|_, i| i.expires > now);
    g.issued.insert(
        token.clone(),
        Issued {
            expires: now + std::time::Duration::from_secs(TOKEN_TTL_SECS),
            subject: sub.to_ascii_lowercase(),
            scopes: asked,
        },
    );
    Json(json!({
        "access_token": token,
        "expires_in": TOKEN_TTL_SECS,
        "token_type": "Bearer",
    }))
    .into_response()
}

// ---- users ----------------------------------------------------------------

async fn get_user(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let g = guard!(s, headers);
    match g.user_index(&key) {
        Some(u) => Json(g.user_json(&s, u)).into_response(),
        None => not_found("userKey"),
    }
}

async fn patch_user(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let Some(Json(body)) = body else {
        return bad_request("Invalid JSON payload received.");
    };
    match body.get("suspended") {
        None => {}
        Some(Value::Bool(true)) => {
            let user = &mut g.users[u];
            if !user.suspended {
                user.suspended = true;
                user.suspended_at = Some(Instant::now());
                user.suspension_reason = Some("ADMIN".into());
            }
        }
        Some(Value::Bool(false)) => {
            let user = &mut g.users[u];
            user.suspended = false;
            user.suspended_at = None;
            user.suspension_reason = None;
        }
        Some(_) => return bad_request("Invalid value for field 'suspended': expected a boolean"),
    }
    // The answer reflects the write; reads catch up after the delay.
    let mut v = g.user_json(&s, u);
    let suspended = g.users[u].suspended;
    v["suspended"] = json!(suspended);
    if suspended {
        v["suspensionReason"] = json!("ADMIN");
    }
    Json(v).into_response()
}

async fn sign_out(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    g.users[u].sign_outs += 1;
    no_content()
}

/// `users.makeAdmin` `{"status": bool}`: grants or takes away super admin.
async fn make_admin(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    match body.as_ref().and_then(|Json(b)| b.get("status")) {
        Some(Value::Bool(b)) => {
            g.users[u].is_admin = *b;
            no_content()
        }
        _ => bad_request("Invalid value for field 'status': expected a boolean"),
    }
}

/// One clause of a user search: `email` (`=` exact, `:` exact or a
/// trailing `*` prefix; primary address or alias), `isSuspended=`,
/// `isAdmin=`, `orgUnitPath=`.
fn user_matches(g: &State, s: &SandboxState, i: usize, clause: &str) -> Result<bool, ()> {
    let at = clause.find([':', '=']).ok_or(())?;
    let (field, rest) = clause.split_at(at);
    let (op, value) = rest.split_at(1);
    let value = unquote(value);
    let u = &g.users[i];
    let flag = |b: bool| match value {
        "true" => Ok(b),
        "false" => Ok(!b),
        _ => Err(()),
    };
    match (field, op) {
        ("email", _) => {
            let v = value.to_lowercase();
            let m = match (op, v.strip_suffix('*')) {
                (":", Some(p)) => Match::Prefix(p.to_string()),
                _ => Match::Exact(v.clone()),
            };
            Ok(std::iter::once(&u.primary_email)
                .chain(&u.aliases)
                .any(|e| m.hits(e)))
        }
        ("isSuspended", "=") => flag(g.shows_suspended(s, i)),
        ("isAdmin", "=") => flag(u.is_admin),
        ("orgUnitPath", "=") => Ok(u.org_unit.eq_ignore_ascii_case(value)),
        _ => Err(()),
    }
}

/// `users.list`: `customer` or `domain` (one is required), `query`,
/// `orderBy` (`email`, `givenName`, `familyName`), `sortOrder`, paged
/// (default 100, at most 500).
async fn list_users(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> Response {
    let mut g = guard!(s, headers, p.page_token.is_some());
    let max = match p.max(100, 500) {
        Ok(m) => m,
        Err(r) => return r,
    };
    match (&p.customer, &p.domain) {
        (None, None) => return bad_request("Bad Request: customer or domain is required"),
        (Some(c), _) if !customer_ok(c) => return bad_request("Bad Request"),
        (_, Some(d)) if !d.eq_ignore_ascii_case(CUSTOMER_DOMAIN) => {
            return google_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Not Authorized to access this resource/api",
            );
        }
        _ => {}
    }
    let clauses = p.query.as_deref().map(query_clauses).unwrap_or_default();
    let mut picked = Vec::new();
    for i in 0..g.users.len() {
        let mut all = true;
        for c in &clauses {
            match user_matches(&g, &s, i, c) {
                Ok(hit) => all &= hit,
                Err(()) => return bad_request(&format!("Invalid Input: {c}")),
            }
        }
        if all {
            picked.push(i);
        }
    }
    let key = |i: &usize| -> String {
        let u = &g.users[*i];
        match p.order_by.as_deref() {
            Some("givenName") => u.given.to_lowercase(),
            Some("familyName") => u.family.to_lowercase(),
            _ => u.primary_email.to_lowercase(),
        }
    };
    match p.order_by.as_deref() {
        None => {}
        Some("email" | "givenName" | "familyName") => picked.sort_by_key(key),
        Some(_) => return bad_request("Invalid value for orderBy"),
    }
    let descending = match p.sort_order.as_deref() {
        None => false,
        Some(o) if o.eq_ignore_ascii_case("ASCENDING") => false,
        Some(o) if o.eq_ignore_ascii_case("DESCENDING") => true,
        Some(_) => return bad_request("Invalid value for sortOrder"),
    };
    // The order applies only to a sorted list.
    if descending && p.order_by.is_some() {
        picked.reverse();
    }
    let listing = format!(
        "users:{}:{}:{}:{}",
        p.query.as_deref().unwrap_or(""),
        p.order_by.as_deref().unwrap_or(""),
        p.sort_order.as_deref().unwrap_or(""),
        p.domain.as_deref().unwrap_or(""),
    );
    let (range, next) = match g.page(&listing, picked.len(), max, p.page_token.as_deref()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = picked[range].iter().map(|&i| g.user_json(&s, i)).collect();
    let mut v = list_body(
        "admin#directory#users",
        etag(&[&listing, &picked.len().to_string()]),
        "users",
        items,
    );
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    Json(v).into_response()
}

/// `twoStepVerification.turnOff`: the user is no longer enrolled, and the
/// backup codes that belonged to the enrolment are gone. Google does not
/// document an answer for a user who is not enrolled; 204 is assumed.
async fn turn_off_2sv(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let user = &mut g.users[u];
    user.two_sv = false;
    user.backup_codes.clear();
    no_content()
}

// ---- tokens ---------------------------------------------------------------

async fn list_tokens(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let user_key = &g.users[u].id;
    let items: Vec<Value> = g
        .tokens
        .iter()
        .filter(|t| t.user == u && s.still_listed(t.removed_at))
        .map(|t| token_json(user_key, t))
        .collect();
    Json(list_body(
        "admin#directory#tokenList",
        etag(&[user_key, "tokens", &items.len().to_string()]),
        "items",
        items,
    ))
    .into_response()
}

fn token_json(user_key: &str, t: &Token) -> Value {
    json!({
        "kind": "admin#directory#token",
        "etag": etag(&[user_key, &t.client_id]),
        "clientId": t.client_id,
        "displayText": t.display_text,
        "scopes": t.scopes,
        "anonymous": false,
        "nativeApp": t.native_app,
        "userKey": user_key,
    })
}

/// `tokens.get`: one client's token (a removal shows after the delay).
async fn get_token(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((key, client_id)): Path<(String, String)>,
) -> Response {
    let g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    match g
        .tokens
        .iter()
        .find(|t| t.user == u && t.client_id == client_id && s.still_listed(t.removed_at))
    {
        Some(t) => Json(token_json(&g.users[u].id, t)).into_response(),
        None => not_found("clientId"),
    }
}

async fn delete_token(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((key, client_id)): Path<(String, String)>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let now = Instant::now();
    let mut found = false;
    for t in g
        .tokens
        .iter_mut()
        .filter(|t| t.user == u && t.client_id == client_id && t.removed_at.is_none())
    {
        t.removed_at = Some(now);
        found = true;
    }
    if found {
        no_content()
    } else {
        not_found("clientId")
    }
}

// ---- application-specific passwords -----------------------------------------

async fn list_asps(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let user_key = &g.users[u].id;
    let items: Vec<Value> = g
        .asps
        .iter()
        .filter(|a| a.user == u && s.still_listed(a.removed_at))
        .map(|a| asp_json(user_key, a))
        .collect();
    Json(list_body(
        "admin#directory#aspList",
        etag(&[user_key, "asps", &items.len().to_string()]),
        "items",
        items,
    ))
    .into_response()
}

fn asp_json(user_key: &str, a: &Asp) -> Value {
    json!({
        "kind": "admin#directory#asp",
        "etag": etag(&[user_key, &a.code_id.to_string()]),
        "codeId": a.code_id,
        "name": a.name,
        "creationTime": a.creation_time.to_string(),
        "lastTimeUsed": a.last_time_used.to_string(),
        "userKey": user_key,
    })
}

/// `asps.get`.
async fn get_asp(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((key, code)): Path<(String, String)>,
) -> Response {
    let g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let Ok(code) = code.parse::<i64>() else {
        return bad_request("Invalid value for codeId: expected an integer");
    };
    match g
        .asps
        .iter()
        .find(|a| a.user == u && a.code_id == code && s.still_listed(a.removed_at))
    {
        Some(a) => Json(asp_json(&g.users[u].id, a)).into_response(),
        None => not_found("codeId"),
    }
}

async fn delete_asp(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((key, code)): Path<(String, String)>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let Ok(code) = code.parse::<i64>() else {
        return bad_request("Invalid value for codeId: expected an integer");
    };
    match g
        .asps
        .iter_mut()
        .find(|a| a.user == u && a.code_id == code && a.removed_at.is_none())
    {
        Some(a) => {
            a.removed_at = Some(Instant::now());
            no_content()
        }
        None => not_found("codeId"),
    }
}

// ---- backup verification codes ---------------------------------------------

async fn list_codes(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    let user = &g.users[u];
    let items: Vec<Value> = user
        .backup_codes
        .iter()
        .map(|c| {
            json!({
                "kind": "admin#directory#verificationCode",
                "etag": etag(&[&user.id, c]),
                "userId": user.id,
                "verificationCode": c,
            })
        })
        .collect();
    Json(list_body(
        "admin#directory#verificationCodesList",
        etag(&[&user.id, "codes", &items.len().to_string()]),
        "items",
        items,
    ))
    .into_response()
}

async fn invalidate_codes(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(u) = g.user_index(&key) else {
        return not_found("userKey");
    };
    // Google refuses to invalidate the backup codes of a suspended user.
    // The exact status is not documented; 412 conditionNotMet is assumed.
    if g.users[u].suspended {
        return google_error(
            StatusCode::PRECONDITION_FAILED,
            "conditionNotMet",
            "User is suspended: backup verification codes cannot be invalidated.",
        );
    }
    g.users[u].backup_codes.clear();
    no_content()
}

// ---- groups -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    user_key: Option<String>,
    max_results: Option<String>,
    page_token: Option<String>,
    include_indirect_role_assignments: Option<String>,
    query: Option<String>,
    customer: Option<String>,
    customer_id: Option<String>,
    domain: Option<String>,
    order_by: Option<String>,
    sort_order: Option<String>,
}

impl ListParams {
    fn max(&self, default: usize, cap: usize) -> Result<usize, Response> {
        match &self.max_results {
            None => Ok(default),
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=cap).contains(&n) => Ok(n),
                _ => Err(bad_request(&format!(
                    "Invalid value for maxResults: must be between 1 and {cap}"
                ))),
            },
        }
    }
}

/// One clause of a group search (`query`): `memberKey=`, `email=`/`email:`
/// and `name=`/`name:` (a trailing `*` after `:` matches a prefix).
#[derive(Debug, Default)]
struct GroupQuery {
    member_key: Option<String>,
    email: Option<Match>,
    name: Option<Match>,
}

#[derive(Debug)]
enum Match {
    Exact(String),
    Prefix(String),
}

impl Match {
    fn hits(&self, text: &str) -> bool {
        let t = text.to_lowercase();
        match self {
            Match::Exact(v) => t == *v,
            Match::Prefix(v) => t.starts_with(v.as_str()),
        }
    }
}

/// Splits a search into clauses at spaces outside quotes.
fn query_clauses(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in q.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(qc), _) if qc == c => {
                quote = None;
                cur.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(v: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn parse_group_query(q: &str) -> Result<GroupQuery, Response> {
    let mut out = GroupQuery::default();
    let invalid = || bad_request(&format!("Invalid Input: {q}"));
    for clause in query_clauses(q) {
        let at = clause.find([':', '=']).ok_or_else(invalid)?;
        let (field, rest) = clause.split_at(at);
        let (op, value) = rest.split_at(1);
        let value = unquote(value).to_lowercase();
        if value.is_empty() {
            return Err(invalid());
        }
        let m = match (op, value.strip_suffix('*')) {
            (":", Some(prefix)) => Match::Prefix(prefix.to_string()),
            _ => Match::Exact(value.clone()),
        };
        match (field, op) {
            ("memberKey", "=") => out.member_key = Some(value),
            ("email", _) => out.email = Some(m),
            ("name", _) => out.name = Some(m),
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}

async fn list_groups(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> Response {
    let search = match p.query.as_deref().map(parse_group_query).transpose() {
        Ok(q) => q.unwrap_or_default(),
        Err(r) => return r,
    };
    let mut g = guard!(s, headers, p.page_token.is_some());
    let max = match p.max(200, 200) {
        Ok(m) => m,
        Err(r) => return r,
    };
    // One of customer, domain or userKey is required; userKey excludes
    // customer (the reference says so).
    match (&p.customer, &p.domain, &p.user_key) {
        (None, None, None) => {
            return bad_request("Bad Request: one of customer, domain or userKey is required");
        }
        (Some(_), _, Some(_)) => {
            return bad_request("Bad Request: userKey cannot be used with customer");
        }
        _ => {}
    }
    if p.customer.as_deref().is_some_and(|c| !customer_ok(c)) {
        return bad_request("Bad Request");
    }
    if let Some(d) = p.domain.as_deref()
        && !d.eq_ignore_ascii_case(CUSTOMER_DOMAIN)
    {
        return google_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not Authorized to access this resource/api",
        );
    }
    let descending = match (p.order_by.as_deref(), p.sort_order.as_deref()) {
        (None, _) => None,
        (Some("email"), None) => Some(false),
        (Some("email"), Some(o)) if o.eq_ignore_ascii_case("ASCENDING") => Some(false),
        (Some("email"), Some(o)) if o.eq_ignore_ascii_case("DESCENDING") => Some(true),
        (Some("email"), Some(_)) => return bad_request("Invalid value for sortOrder"),
        (Some(_), _) => return bad_request("Invalid value for orderBy"),
    };
    // Groups a user key is a member of (memberships removed within the
    // consistency delay still listed).
    let member_of = |k: &str| -> Option<Vec<usize>> {
        let u = g.user_index(k)?;
        Some(
            g.memberships
                .iter()
                .filter(|m| m.user == u && s.still_listed(m.removed_at))
                .map(|m| m.group)
                .collect(),
        )
    };
    let mut groups: Vec<usize> = match p.user_key.as_deref() {
        Some(k) => match member_of(k) {
            Some(v) => v,
            None => return not_found("userKey"),
        },
        None => (0..g.groups.len()).collect(),
    };
    if let Some(k) = search.member_key.as_deref() {
        // A search for a key nobody has finds nothing.
        let of = member_of(k).unwrap_or_default();
        groups.retain(|i| of.contains(i));
    }
    if let Some(d) = p.domain.as_deref() {
        let suffix = format!("@{}", d.to_ascii_lowercase());
        groups.retain(|&i| g.groups[i].email.to_ascii_lowercase().ends_with(&suffix));
    }
    if let Some(m) = &search.email {
        groups.retain(|&i| m.hits(&g.groups[i].email));
    }
    if let Some(m) = &search.name {
        groups.retain(|&i| m.hits(&g.groups[i].name));
    }
    if let Some(desc) = descending {
        groups.sort_by_key(|&i| g.groups[i].email.to_ascii_lowercase());
        if desc {
            groups.reverse();
        }
    }
    let listing = format!(
        "groups:{}:{}:{}:{}:{:?}",
        p.user_key.as_deref().unwrap_or(""),
        p.customer.as_deref().unwrap_or(""),
        p.domain.as_deref().unwrap_or(""),
        p.query.as_deref().unwrap_or(""),
        descending,
    );
    let (range, next) = match g.page(&listing, groups.len(), max, p.page_token.as_deref()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = groups[range].iter().map(|&i| g.group_json(i)).collect();
    let mut v = list_body(
        "admin#directory#groups",
        etag(&[&listing, &groups.len().to_string()]),
        "groups",
        items,
    );
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    Json(v).into_response()
}

/// `groups.get`, by the group's email or id.
async fn get_group(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let g = guard!(s, headers);
    match g.group_index(&key) {
        Some(i) => Json(g.group_json(i)).into_response(),
        None => not_found("groupKey"),
    }
}

/// The membership of a user in a group as reads show it (a removal within
/// the consistency delay still shows): group index and user index.
fn listed_membership(
    s: &SandboxState,
    g: &State,
    group: &str,
    member: &str,
) -> Result<Option<(usize, usize)>, Response> {
    let Some(gi) = g.group_index(group) else {
        return Err(not_found("groupKey"));
    };
    let Some(u) = g.user_index(member) else {
        return Err(not_found("memberKey"));
    };
    Ok(g.memberships
        .iter()
        .any(|m| m.group == gi && m.user == u && s.still_listed(m.removed_at))
        .then_some((gi, u)))
}

/// `members.get`.
async fn get_member(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((group, member)): Path<(String, String)>,
) -> Response {
    let g = guard!(s, headers);
    match listed_membership(&s, &g, &group, &member) {
        Err(r) => r,
        Ok(None) => not_found("memberKey"),
        Ok(Some((gi, u))) => {
            let user = &g.users[u];
            Json(json!({
                "kind": "admin#directory#member",
                "etag": etag(&[&g.groups[gi].id, &user.id]),
                "id": user.id,
                "email": user.primary_email,
                "role": "MEMBER",
                "type": "USER",
                "status": "ACTIVE",
                "delivery_settings": "ALL_MAIL",
            }))
            .into_response()
        }
    }
}

/// `members.hasMember`.
async fn has_member(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((group, member)): Path<(String, String)>,
) -> Response {
    let g = guard!(s, headers);
    match listed_membership(&s, &g, &group, &member) {
        Err(r) => r,
        Ok(found) => Json(json!({"isMember": found.is_some()})).into_response(),
    }
}

async fn delete_member(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((group, member)): Path<(String, String)>,
) -> Response {
    let mut g = guard!(s, headers);
    let Some(gi) = g.group_index(&group) else {
        return not_found("groupKey");
    };
    let Some(u) = g.user_index(&member) else {
        return not_found("memberKey");
    };
    match g
        .memberships
        .iter_mut()
        .find(|m| m.group == gi && m.user == u && m.removed_at.is_none())
    {
        Some(m) => {
            m.removed_at = Some(Instant::now());
            no_content()
        }
        None => not_found("memberKey"),
    }
}

// ---- customer -----------------------------------------------------------------

fn customer_ok(c: &str) -> bool {
    c == "my_customer" || c == CUSTOMER_ID
}

/// `customers.get` (`my_customer` or the customer's id).
async fn get_customer(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let _g = guard!(s, headers);
    if !customer_ok(&key) {
        return not_found("customerKey");
    }
    Json(json!({
        "kind": "admin#directory#customer",
        "id": CUSTOMER_ID,
        "etag": etag(&[CUSTOMER_ID]),
        "customerDomain": CUSTOMER_DOMAIN,
        "alternateEmail": "it-alerts@example.net",
        "customerCreationTime": "2019-04-02T09:30:00.000Z",
        "language": "en",
        "phoneNumber": "+15550100",
        "postalAddress": {
            "organizationName": "Example Inc.",
            "addressLine1": "1 Example Way",
            "locality": "Springfield",
            "postalCode": "00000",
            "countryCode": "US",
        },
    }))
    .into_response()
}

// ---- admin roles ------------------------------------------------------------

async fn list_assignments(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(customer): Path<String>,
    Query(p): Query<ListParams>,
) -> Response {
    let mut g = guard!(s, headers, p.page_token.is_some());
    if !customer_ok(&customer) {
        return bad_request("Bad Request");
    }
    let max = match p.max(100, 200) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let indirect = p.include_indirect_role_assignments.as_deref() == Some("true");
    if indirect && p.user_key.is_none() {
        return bad_request("includeIndirectRoleAssignments requires userKey");
    }
    let picked: Vec<usize> = match p.user_key.as_deref() {
        Some(k) => {
            let Some(u) = g.user_index(k) else {
                return not_found("userKey");
            };
            let groups: Vec<usize> = g
                .memberships
                .iter()
                .filter(|m| m.user == u && m.removed_at.is_none())
                .map(|m| m.group)
                .collect();
            g.assignments
                .iter()
                .enumerate()
                .filter(|(_, a)| s.still_listed(a.removed_at))
                .filter(|(_, a)| match a.assignee {
                    Assignee::User(x) => x == u,
                    Assignee::Group(gr) => indirect && groups.contains(&gr),
                })
                .map(|(i, _)| i)
                .collect()
        }
        None => g
            .assignments
            .iter()
            .enumerate()
            .filter(|(_, a)| s.still_listed(a.removed_at))
            .map(|(i, _)| i)
            .collect(),
    };
    let listing = format!(
        "roleassignments:{}:{indirect}",
        p.user_key.as_deref().unwrap_or("")
    );
    let (range, next) = match g.page(&listing, picked.len(), max, p.page_token.as_deref()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = picked[range]
        .iter()
        .map(|&i| {
            let a = &g.assignments[i];
            let (to, ty) = match a.assignee {
                Assignee::User(u) => (g.users[u].id.clone(), "user"),
                Assignee::Group(gr) => (g.groups[gr].id.clone(), "group"),
            };
            json!({
                "kind": "admin#directory#roleAssignment",
                "etag": etag(&[&a.id]),
                "roleAssignmentId": a.id,
                "roleId": g.roles[a.role].id,
                "assignedTo": to,
                "assigneeType": ty,
                "scopeType": "CUSTOMER",
            })
        })
        .collect();
    let mut v = list_body(
        "admin#directory#roleAssignments",
        etag(&[&listing, &picked.len().to_string()]),
        "items",
        items,
    );
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    Json(v).into_response()
}

async fn delete_assignment(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((customer, id)): Path<(String, String)>,
) -> Response {
    let mut g = guard!(s, headers);
    if !customer_ok(&customer) {
        return bad_request("Bad Request");
    }
    match g
        .assignments
        .iter_mut()
        .find(|a| a.id == id && a.removed_at.is_none())
    {
        Some(a) => {
            a.removed_at = Some(Instant::now());
            no_content()
        }
        None => not_found("roleAssignmentId"),
    }
}

async fn list_roles(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(customer): Path<String>,
    Query(p): Query<ListParams>,
) -> Response {
    let mut g = guard!(s, headers, p.page_token.is_some());
    if !customer_ok(&customer) {
        return bad_request("Bad Request");
    }
    let max = match p.max(100, 100) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let total = g.roles.len();
    let (range, next) = match g.page("roles", total, max, p.page_token.as_deref()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = g.roles[range]
        .iter()
        .map(|r| {
            json!({
                "kind": "admin#directory#role",
                "etag": etag(&[&r.id]),
                "roleId": r.id,
                "roleName": r.name,
                "roleDescription": r.description,
                "isSystemRole": true,
                "isSuperAdminRole": r.super_admin,
                "rolePrivileges": [],
            })
        })
        .collect();
    let mut v = json!({"kind": "admin#directory#roles", "etag": etag(&["roles"]), "items": items});
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    Json(v).into_response()
}

// ---- mobile devices ---------------------------------------------------------

/// The value of `email:` in a device search query (quotes removed).
fn query_email(q: &str) -> Option<String> {
    let rest = q.trim().strip_prefix("email:")?.trim();
    let rest = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(rest);
    Some(rest.to_ascii_lowercase())
}

fn device_status(s: &SandboxState, d: &Device) -> String {
    match &d.action {
        Some((action, at)) if !s.still_listed(Some(*at)) => match action.as_str() {
            "admin_account_wipe" => "ACCOUNT_WIPING".into(),
            "admin_remote_wipe" => "WIPING".into(),
            "block" | "cancel_remote_wipe_then_block" => "BLOCKED".into(),
            _ => "APPROVED".into(),
        },
        _ => d.status.clone(),
    }
}

async fn list_devices(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(customer): Path<String>,
    Query(p): Query<ListParams>,
) -> Response {
    let email = p.query.as_deref().and_then(query_email);
    let mut g = guard!(s, headers, p.page_token.is_some());
    if !customer_ok(&customer) {
        return bad_request("Bad Request");
    }
    let max = match p.max(100, 100) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if p.query.is_some() && email.is_none() {
        return bad_request("Invalid query: only email: is supported here");
    }
    // Google's search matches words by prefix; callers compare exactly.
    let picked: Vec<usize> = g
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            email.as_deref().is_none_or(|e| {
                g.users[d.user]
                    .primary_email
                    .to_ascii_lowercase()
                    .starts_with(e)
            })
        })
        .map(|(i, _)| i)
        .collect();
    let listing = format!("devices:{}", email.as_deref().unwrap_or(""));
    let (range, next) = match g.page(&listing, picked.len(), max, p.page_token.as_deref()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = picked[range]
        .iter()
        .map(|&i| {
            let d = &g.devices[i];
            let u = &g.users[d.user];
            json!({
                "kind": "admin#directory#mobiledevice",
                "etag": etag(&[&d.resource_id, &device_status(&s, d)]),
                "resourceId": d.resource_id,
                "deviceId": d.device_id,
                "name": [format!("{} {}", u.given, u.family)],
                "email": [u.primary_email],
                "model": d.model,
                "os": d.os,
                "type": d.kind,
                "status": device_status(&s, d),
                "firstSync": d.first_sync,
                "lastSync": d.last_sync,
                "userAgent": "Google Apps Device Policy 18.51.01",
            })
        })
        .collect();
    let mut v = list_body(
        "admin#directory#mobiledevices",
        etag(&[&listing]),
        "mobiledevices",
        items,
    );
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    Json(v).into_response()
}

async fn device_action(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((customer, resource_id)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Response {
    let mut g = guard!(s, headers);
    if !customer_ok(&customer) {
        return bad_request("Bad Request");
    }
    let action = body
        .as_ref()
        .and_then(|Json(b)| b.get("action"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    const ACTIONS: &[&str] = &[
        "admin_account_wipe",
        "admin_remote_wipe",
        "approve",
        "block",
        "cancel_remote_wipe_then_activate",
        "cancel_remote_wipe_then_block",
    ];
    if !ACTIONS.contains(&action.as_str()) {
        return bad_request("Invalid value for action");
    }
    match g.devices.iter_mut().find(|d| d.resource_id == resource_id) {
        Some(d) => {
            d.action = Some((action, Instant::now()));
            no_content()
        }
        None => not_found("resourceId"),
    }
}

// ---- licensing ----------------------------------------------------------------

fn license_index(g: &State, product: &str, sku: &str, user_id: &str) -> Option<usize> {
    // userId is the user's current primary email (aliases are not accepted).
    g.licenses.iter().position(|l| {
        l.product_id == product
            && l.sku_id == sku
            && g.users[l.user].primary_email.eq_ignore_ascii_case(user_id)
    })
}

fn license_json(s: &SandboxState, g: &State, i: usize) -> Value {
    let l = &g.licenses[i];
    let email = &g.users[l.user].primary_email;
    json!({
        "kind": "licensing#licenseAssignment",
        "etags": etag(&[&l.product_id, &l.sku_id, email]),
        "selfLink": format!(
            "{}/apps/licensing/v1/product/{}/sku/{}/user/{}",
            s.base_url,
            l.product_id,
            l.sku_id,
            percent_encoding::utf8_percent_encode(email, percent_encoding::NON_ALPHANUMERIC)
        ),
        "userId": email,
        "productId": l.product_id,
        "skuId": l.sku_id,
        "productName": l.product_name,
        "skuName": l.sku_name,
    })
}

async fn list_licenses_for_product(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path(product): Path<String>,
    Query(p): Query<ListParams>,
) -> Response {
    list_licenses(&s, &headers, &product, None, &p)
}

async fn list_licenses_for_sku(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((product, sku)): Path<(String, String)>,
    Query(p): Query<ListParams>,
) -> Response {
    list_licenses(&s, &headers, &product, Some(&sku), &p)
}

/// `licenseAssignments.listForProduct` and `listForProductAndSku`: the
/// assignments of a product (or one of its SKUs), paged (default 100, at
/// most 1000). `customerId` is the customer's id or its primary domain.
fn list_licenses(
    s: &SandboxState,
    headers: &HeaderMap,
    product: &str,
    sku: Option<&str>,
    p: &ListParams,
) -> Response {
    let mut g = guard!(s, headers, p.page_token.is_some());
    match p.customer_id.as_deref() {
        None => return bad_request("Required parameter: customerId"),
        Some(c) if c == CUSTOMER_ID || c.eq_ignore_ascii_case(CUSTOMER_DOMAIN) => {}
        Some(_) => return bad_request("Invalid customerId"),
    }
    let max = match p.max(100, 1000) {
        Ok(m) => m,
        Err(r) => return r,
    };
    // An unknown product or SKU is an error, never an empty (all clear) list.
    if !SKUS.iter().any(|(pr, _, _, _)| *pr == product) {
        return bad_request(&format!("Invalid productId: {product}"));
    }
    if let Some(k) = sku
        && !SKUS.iter().any(|(pr, sk, _, _)| *pr == product && *sk == k)
    {
        return bad_request(&format!("Invalid skuId: {k}"));
    }
    let picked: Vec<usize> = g
        .licenses
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.product_id == product
                && sku.is_none_or(|k| l.sku_id == k)
                && s.still_listed(l.removed_at)
        })
        .map(|(i, _)| i)
        .collect();
    let listing = format!("licenses:{product}:{}", sku.unwrap_or(""));
    let (range, next) = match g.page(&listing, picked.len(), max, p.page_token.as_deref()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let items: Vec<Value> = picked[range]
        .iter()
        .map(|&i| license_json(s, &g, i))
        .collect();
    let mut v = list_body(
        "licensing#licenseAssignmentList",
        etag(&[&listing, &picked.len().to_string()]),
        "items",
        items,
    );
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    Json(v).into_response()
}

async fn get_license(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((product, sku, user)): Path<(String, String, String)>,
) -> Response {
    let g = guard!(s, headers);
    match license_index(&g, &product, &sku, &user)
        .filter(|&i| s.still_listed(g.licenses[i].removed_at))
    {
        Some(i) => Json(license_json(&s, &g, i)).into_response(),
        None => google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            "User does not have a license for specified sku and product",
        ),
    }
}

async fn delete_license(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Path((product, sku, user)): Path<(String, String, String)>,
) -> Response {
    let mut g = guard!(s, headers);
    match license_index(&g, &product, &sku, &user).filter(|&i| g.licenses[i].removed_at.is_none()) {
        Some(i) => {
            g.licenses[i].removed_at = Some(Instant::now());
            Json(json!({})).into_response()
        }
        None => google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            "User does not have a license for specified sku and product",
        ),
    }
}

/// A Google list answer: `kind`, `etag`, and the items under `field`, which
/// Google leaves out when the list is empty.
fn list_body(kind: &str, etag: String, field: &str, items: Vec<Value>) -> Value {
    let mut v = json!({"kind": kind, "etag": etag});
    if !items.is_empty() {
        v[field] = Value::Array(items);
    }
    v
}

// ---- partial response (`fields`) ----------------------------------------------

/// Google's global `fields` parameter, once for every Google route: the
/// answer keeps only the fields named. Grammar: `a,b` (several),
/// `a/b` (a field inside another), `a(b,c)` (several inside one), `*` (all
/// fields at that level); arrays are looked through, so `items/email` keeps
/// the `email` of every item.
pub mod partial {
    use std::collections::BTreeMap;

    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::{StatusCode, header};
    use axum::middleware::Next;
    use axum::response::Response;
    use serde_json::{Map, Value};

    /// What to keep of one field.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Sel {
        /// The whole value.
        All,
        /// Only these fields of it (of each element, for an array).
        Some(BTreeMap<String, Sel>),
    }

    pub type Selection = BTreeMap<String, Sel>;

    /// A `fields` value that does not follow the grammar.
    #[derive(Debug)]
    pub struct Malformed;

    /// Parses a `fields` value.
    pub fn parse(text: &str) -> Result<Selection, Malformed> {
        let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut pos = 0;
        let sel = list(&chars, &mut pos)?;
        if pos == chars.len() {
            Ok(sel)
        } else {
            Err(Malformed)
        }
    }

    fn list(c: &[char], pos: &mut usize) -> Result<Selection, Malformed> {
        let mut out = Selection::new();
        loop {
            selection(c, pos, &mut out)?;
            if c.get(*pos) == Some(&',') {
                *pos += 1;
            } else {
                return Ok(out);
            }
        }
    }

    fn name(c: &[char], pos: &mut usize) -> Result<String, Malformed> {
        let start = *pos;
        while c
            .get(*pos)
            .is_some_and(|ch| ch.is_alphanumeric() || "_$@.-*#".contains(*ch))
        {
            *pos += 1;
        }
        if *pos == start {
            return Err(Malformed);
        }
        Ok(c[start..*pos].iter().collect())
    }

    fn selection(c: &[char], pos: &mut usize, out: &mut Selection) -> Result<(), Malformed> {
        let mut path = vec![name(c, pos)?];
        while c.get(*pos) == Some(&'/') {
            *pos += 1;
            path.push(name(c, pos)?);
        }
        let mut sel = if c.get(*pos) == Some(&'(') {
            *pos += 1;
            let inner = list(c, pos)?;
            if c.get(*pos) != Some(&')') {
                return Err(Malformed);
            }
            *pos += 1;
            Sel::Some(inner)
        } else {
            Sel::All
        };
        for n in path[1..].iter().rev() {
            sel = Sel::Some(Selection::from([(n.clone(), sel)]));
        }
        merge(out, path.swap_remove(0), sel);
        Ok(())
    }

    fn merge(out: &mut Selection, key: String, sel: Sel) {
        let merged = match (out.remove(&key), sel) {
            (None, s) => s,
            (Some(Sel::All), _) | (_, Sel::All) => Sel::All,
            (Some(Sel::Some(mut a)), Sel::Some(b)) => {
                for (k, v) in b {
                    merge(&mut a, k, v);
                }
                Sel::Some(a)
            }
        };
        out.insert(key, merged);
    }

    /// The part of `v` that `sel` names.
    pub fn apply(v: &Value, sel: &Selection) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.iter().map(|i| apply(i, sel)).collect()),
            Value::Object(obj) => {
                let mut out = Map::new();
                for (k, val) in obj {
                    match sel.get(k).or_else(|| sel.get("*")) {
                        None => {}
                        Some(Sel::All) => {
                            out.insert(k.clone(), val.clone());
                        }
                        Some(Sel::Some(inner)) if val.is_object() || val.is_array() => {
                            out.insert(k.clone(), apply(val, inner));
                        }
                        Some(Sel::Some(_)) => {}
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    /// The `fields` query parameter, if any (decoded).
    fn fields_param(req: &Request) -> Option<String> {
        let q = req.uri().query()?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "fields")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.trim().is_empty())
    }

    /// Route layer: filters every successful JSON answer to the `fields`
    /// asked for; a malformed selection is Google's 400 before the call runs.
    pub async fn partial_response(req: Request, next: Next) -> Response {
        let Some(fields) = fields_param(&req) else {
            return next.run(req).await;
        };
        let Ok(sel) = parse(&fields) else {
            return super::google_error(
                StatusCode::BAD_REQUEST,
                "invalidParameter",
                &format!("Invalid field selection {fields}"),
            );
        };
        let resp = next.run(req).await;
        let json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !resp.status().is_success() || !json {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return super::google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "backendError",
                "Backend Error",
            );
        };
        let filtered = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => serde_json::to_vec(&apply(&v, &sel)).unwrap_or_else(|_| bytes.to_vec()),
            Err(_) => bytes.to_vec(),
        };
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(filtered))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        fn pick(fields: &str, v: Value) -> Value {
            apply(&v, &parse(fields).expect(fields))
        }

        #[test]
        fn grammar_covers_lists_paths_sub_selections_and_wildcards() {
            let v = json!({
                "kind": "k", "etag": "e", "nextPageToken": "n",
                "items": [
                    {"clientId": "a", "displayText": "A", "scopes": ["s"], "name": {"givenName": "G", "familyName": "F"}},
                    {"clientId": "b", "displayText": "B", "scopes": []}
                ]
            });
            assert_eq!(
                pick("items(clientId,displayText)", v.clone()),
                json!({"items": [{"clientId": "a", "displayText": "A"}, {"clientId": "b", "displayText": "B"}]})
            );
            assert_eq!(
                pick("nextPageToken,items/clientId", v.clone()),
                json!({"nextPageToken": "n", "items": [{"clientId": "a"}, {"clientId": "b"}]})
            );
            assert_eq!(
                pick("items/name/givenName", v.clone()),
                json!({"items": [{"name": {"givenName": "G"}}, {}]})
            );
            assert_eq!(
                pick("items(name(familyName)),items/clientId", v.clone()),
                json!({"items": [{"clientId": "a", "name": {"familyName": "F"}}, {"clientId": "b"}]})
            );
            assert_eq!(
                pick("kind, etag", v.clone()),
                json!({"kind": "k", "etag": "e"})
            );
            assert_eq!(pick("items,items/clientId", v.clone())["items"], v["items"]);
            assert_eq!(pick("*", v.clone()), v);
            for bad in ["", "a(", "a)", "a//b", "(a)", "a,", "a(b", "a b(c"] {
                assert!(parse(bad).is_err(), "{bad:?}");
            }
        }
    }
}

// ---- batch ---------------------------------------------------------------------

/// `POST /batch` (the `batchPath` of both discovery documents): a
/// multipart/mixed body of `application/http` parts, each an HTTP request
/// to the Directory or Licensing API. Each part goes through the whole
/// sandbox router, so authentication, scopes, faults, quotas and the access
/// log apply to it as to the single call; its answer comes back as one part
/// with `Content-ID: <response-{id}>`. Headers of the outer request other
/// than `Content-*` apply to every part that does not set them itself.
pub mod batch {
    use axum::body::Body;
    use axum::extract::{Request, State as AxState};
    use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use tower::ServiceExt;

    use super::google_error;
    use crate::sandbox::Shared;

    /// Google takes at most 1000 calls in one batch.
    pub const MAX_PARTS: usize = 1000;

    /// One part of a batch: its Content-ID and the request it carries.
    #[derive(Debug)]
    pub struct Part {
        pub content_id: Option<String>,
        pub method: String,
        pub target: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    /// The boundary of a `multipart/mixed` content type.
    pub fn boundary(content_type: &str) -> Option<String> {
        let (kind, params) = content_type.split_once(';')?;
        if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
            return None;
        }
        params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
                .filter(|b| !b.is_empty())
        })
    }

    /// Splits `text` at its first empty line (CRLF or LF endings): the head
    /// and what follows.
    fn split_head(text: &str) -> (&str, &str) {
        // A head that starts with the empty line has no headers.
        if let Some(rest) = text
            .strip_prefix("\r\n")
            .or_else(|| text.strip_prefix('\n'))
        {
            return ("", rest);
        }
        let crlf = text.find("\r\n\r\n").map(|i| (i, 4));
        let lf = text.find("\n\n").map(|i| (i, 2));
        let at = match (crlf, lf) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        match at {
            Some((i, n)) => (&text[..i], &text[i + n..]),
            None => (text, ""),
        }
    }

    /// Header lines (folded continuations joined).
    fn headers(head: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with([' ', '\t']) {
                if let Some(last) = out.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        out
    }

    fn get<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The parts of a batch body; Err with a message if it is malformed.
    pub fn parse(body: &str, boundary: &str) -> Result<Vec<Part>, String> {
        let delim = format!("--{boundary}");
        let mut chunks = body.split(delim.as_str());
        chunks.next(); // preamble
        let mut out = Vec::new();
        let mut closed = false;
        for chunk in chunks {
            if chunk.starts_with("--") {
                closed = true;
                break;
            }
            // The rest of the delimiter line, and the line break that
            // belongs to the next delimiter.
            let chunk = chunk
                .split_once('\n')
                .map(|(_, rest)| rest)
                .ok_or("a batch part is empty")?;
            let chunk = chunk
                .strip_suffix("\r\n")
                .or_else(|| chunk.strip_suffix('\n'))
                .unwrap_or(chunk);
            let (mime_head, http) = split_head(chunk);
            let mime = headers(mime_head);
            if let Some(ct) = get(&mime, "content-type")
                && !ct.to_ascii_lowercase().starts_with("application/http")
            {
                return Err(format!(
                    "a batch part has Content-Type {ct}, not application/http"
                ));
            }
            let content_id = get(&mime, "content-id").map(|v| {
                v.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            });
            let (req_line, rest) = http
                .split_once('\n')
                .map(|(l, r)| (l.trim_end_matches('\r'), r))
                .unwrap_or((http.trim_end(), ""));
            let mut words = req_line.split_whitespace();
            let (Some(method), Some(target)) = (words.next(), words.next()) else {
                return Err(format!("a batch part has no request line: {req_line:?}"));
            };
            let (head, body) = split_head(rest);
            let headers = headers(head);
            let mut body = body.as_bytes().to_vec();
            if let Some(n) = get(&headers, "content-length").and_then(|n| n.parse::<usize>().ok()) {
                body.truncate(n);
            } else {
                while body.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    body.pop();
                }
            }
            // An absolute URL keeps only its path and query.
            let target = match target.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
                None => target.to_string(),
            };
            out.push(Part {
                content_id,
                method: method.to_string(),
                target,
                headers,
                body,
            });
        }
        if !closed {
            return Err("the batch body does not end with its closing boundary".into());
        }
        Ok(out)
    }

    /// An answer written as an `application/http` part body.
    async fn http_text(resp: Response) -> Vec<u8> {
        let (parts, body) = resp.into_parts();
        let (status, headers, bytes) = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(b) => (parts.status, parts.headers, b.to_vec()),
            Err(_) => {
                // The part's connection dropped (a reset fault): Google
                // would answer the part with a backend error.
                let r = google_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "backendError",
                    "Backend Error",
                );
                let (p, b) = r.into_parts();
                let b = axum::body::to_bytes(b, usize::MAX)
                    .await
                    .unwrap_or_default();
                (p.status, p.headers, b.to_vec())
            }
        };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        for (k, v) in &headers {
            if k == header::CONTENT_LENGTH || k == header::TRANSFER_ENCODING {
                continue;
            }
            if let Ok(v) = v.to_str() {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
        let mut out = out.into_bytes();
        out.extend_from_slice(&bytes);
        out
    }

    /// The request a part carries, with the outer request's headers where
    /// the part sets none of its own.
    fn request(part: &Part, outer: &HeaderMap) -> Result<Request, String> {
        let path = part.target.split('?').next().unwrap_or("");
        if !path.starts_with('/') {
            return Err(format!(
                "a batch part's target is not a path: {}",
                part.target
            ));
        }
        let google = <crate::apps::google::Vendor as crate::apps::App>::PATHS
            .iter()
            .any(|p| path.starts_with(p));
        if !google || path == "/batch" || path.starts_with("/batch/") {
            return Err(format!(
                "a batch part must call the Directory or Licensing API, not {path}"
            ));
        }
        let method = Method::from_bytes(part.method.as_bytes())
            .map_err(|_| format!("a batch part has an invalid method {}", part.method))?;
        let mut b = Request::builder().method(method).uri(&part.target);
        let h = b
            .headers_mut()
            .ok_or("a batch part has an invalid target")?;
        for (k, v) in outer {
            let n = k.as_str();
            if n.starts_with("content-") || n == "host" || n == "transfer-encoding" {
                continue;
            }
            h.insert(k.clone(), v.clone());
        }
        for (k, v) in &part.headers {
            if k.eq_ignore_ascii_case("host") {
                continue;
            }
            let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(format!("a batch part has an invalid header {k}"));
            };
            h.insert(k, v);
        }
        b.body(Body::from(part.body.clone()))
            .map_err(|e| format!("a batch part is invalid: {e}"))
    }

    pub async fn batch(AxState(s): AxState<Shared>, req: Request) -> Response {
        let (head, body) = req.into_parts();
        let Some(boundary) = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(boundary)
        else {
            return super::bad_request("A batch request must be multipart/mixed with a boundary.");
        };
        let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
            return super::bad_request("The batch body could not be read.");
        };
        let Ok(text) = String::from_utf8(bytes.to_vec()) else {
            return super::bad_request("The batch body is not UTF-8.");
        };
        let parts = match parse(&text, &boundary) {
            Ok(p) if p.is_empty() => return super::bad_request("The batch request has no parts."),
            Ok(p) if p.len() > MAX_PARTS => {
                return super::bad_request(&format!(
                    "A batch request may hold at most {MAX_PARTS} calls, not {}.",
                    p.len()
                ));
            }
            Ok(p) => p,
            Err(e) => return super::bad_request(&format!("Invalid batch request: {e}")),
        };
        // The whole sandbox, so each part is served as the single call is.
        let router = crate::sandbox::router(s.clone());
        let out_boundary = format!("batch_{:032x}", rand::random::<u128>());
        let mut out: Vec<u8> = Vec::new();
        for part in &parts {
            let answer = match request(part, &head.headers) {
                Ok(r) => match router.clone().oneshot(r).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                },
                Err(msg) => super::bad_request(&msg),
            };
            out.extend_from_slice(
                format!("--{out_boundary}\r\nContent-Type: application/http\r\n").as_bytes(),
            );
            if let Some(id) = &part.content_id {
                out.extend_from_slice(format!("Content-ID: <response-{id}>\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&http_text(answer).await);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{out_boundary}--\r\n").as_bytes());
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                format!("multipart/mixed; boundary={out_boundary}"),
            )],
            out,
        )
            .into_response()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_the_parts_a_discovery_client_writes() {
            // As google-api-python-client writes it: LF line ends, quoted
            // boundary, an inner request with headers and a JSON body.
            let b = "===============123==";
            let body = format!(
                "--{b}\nContent-Type: application/http\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\nContent-ID: <abc + 1>\n\nDELETE /admin/directory/v1/groups/g%40x/members/m HTTP/1.1\nContent-Type: application/json\nauthorization: Bearer t\nHost: 127.0.0.1:1\n\n\n--{b}\nContent-Type: application/http\nContent-ID: <abc + 2>\n\nPUT https://admin.googleapis.com/admin/directory/v1/users/u?alt=json HTTP/1.1\ncontent-type: application/json\ncontent-length: 18\n\n{{\"suspended\":true}}\n--{b}--"
            );
            assert_eq!(
                boundary(&format!("multipart/mixed; boundary=\"{b}\"")).as_deref(),
                Some(b)
            );
            let parts = parse(&body, b).unwrap();
            assert_eq!(parts.len(), 2);
            assert_eq!(parts[0].content_id.as_deref(), Some("abc + 1"));
            assert_eq!(parts[0].method, "DELETE");
            assert_eq!(
                parts[0].target,
                "/admin/directory/v1/groups/g%40x/members/m"
            );
            assert_eq!(get(&parts[0].headers, "Authorization"), Some("Bearer t"));
            assert!(parts[0].body.is_empty());
            assert_eq!(parts[1].target, "/admin/directory/v1/users/u?alt=json");
            assert_eq!(parts[1].body, br#"{"suspended":true}"#);
            assert!(parse(&format!("--{b}\n\nGET / HTTP/1.1\n\n"), b).is_err());
            assert_eq!(boundary("application/json"), None);
        }
    }
}

/// Google's error body: `{"error":{"code","message","status","errors":[…]}}`.
pub fn google_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let status_name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        // gRPC has no code for a wrong HTTP method; Google's HTTP layer
        // answers it before any API does.
        405 => "METHOD_NOT_ALLOWED",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let domain = if reason.contains("RateLimit") || reason.contains("quota") {
        "usageLimits"
    } else {
        "global"
    };
    let body = serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "status": status_name,
            "errors": [{"domain": domain, "reason": reason, "message": message}],
        }
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_deterministic_and_complete() {
        let a = State::seed(None);
        let b = State::seed(None);
        assert_eq!(a.users.len(), b.users.len());
        assert!(a.users.len() >= 300, "{}", a.users.len());
        assert_eq!(a.groups.len(), 40);
        assert_eq!(
            a.tokens.iter().map(|t| &t.client_id).collect::<Vec<_>>(),
            b.tokens.iter().map(|t| &t.client_id).collect::<Vec<_>>()
        );
        assert!(a.user_index("sam.okafor@partner.example.net").is_none());
        assert!(a.user_index("ACHEN@example.com").is_some());
        assert!(a.user_index(ODD_EMAIL).is_some());
        let tom = a.user_index("tom.becker@example.com").unwrap();
        assert!(a.users[tom].suspended);
        let mut ids: Vec<_> = a.users.iter().map(|u| &u.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), a.users.len());
    }

    #[test]
    fn bench_leaver_has_the_shape_asked() {
        let shape = tenant::BenchShape {
            email: "bench@example.com".into(),
            groups: 250,
            tokens: 30,
            app_passwords: 7,
            ..tenant::BenchShape::default()
        };
        let s = State::seed(Some(&shape));
        let u = s.user_index("bench@example.com").unwrap();
        assert_eq!(s.memberships.iter().filter(|m| m.user == u).count(), 250);
        assert_eq!(s.tokens.iter().filter(|t| t.user == u).count(), 30);
        assert_eq!(s.asps.iter().filter(|t| t.user == u).count(), 7);
    }
}
