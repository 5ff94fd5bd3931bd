//! The deterministic demo tenant: one company, example.com, whose people
//! exist across the emulated apps. Every vendor module seeds its own state
//! from [`people`] and [`LEAVERS`], so the same person is the same person in
//! Google, Slack and Salesforce.

/// The situation a demo leaver is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Scheduled leaver with lots of access everywhere.
    Scheduled,
    /// Urgent termination; a delegated admin with live sessions and API tokens.
    UrgentTermination,
    /// Contractor with a small footprint.
    Contractor,
    /// Contractor present only in Slack (a guest).
    SlackOnlyContractor,
    /// Moving team: keeps some groups, loses others.
    Mover,
    /// Already suspended in Google, still has tokens and app passwords there,
    /// and is still active in Slack and Salesforce (an orphan).
    AlreadySuspended,
    /// Salesforce email differs from the Google primary address (it is one
    /// of the Google aliases).
    DifferentEmail,
}

pub struct Leaver {
    pub email: &'static str,
    pub name: &'static str,
    pub scenario: Scenario,
    /// Exit time as days from the sandbox's start (negative: already left).
    pub exit_in_days: i64,
    pub summary: &'static str,
}

pub const LEAVERS: &[Leaver] = &[
    Leaver {
        email: "dana.whitfield@example.com",
        name: "Dana Whitfield",
        scenario: Scenario::Scheduled,
        exit_in_days: 2,
        summary: "scheduled leaver (Finance), access everywhere",
    },
    Leaver {
        email: "marcus.reyes@example.com",
        name: "Marcus Reyes",
        scenario: Scenario::UrgentTermination,
        exit_in_days: 0,
        summary: "urgent termination, delegated admin, live sessions and API tokens",
    },
    Leaver {
        email: "lena.kowalski@example.com",
        name: "Lena Kowalski",
        scenario: Scenario::Contractor,
        exit_in_days: 5,
        summary: "contractor, end of contract",
    },
    Leaver {
        email: "sam.okafor@partner.example.net",
        name: "Sam Okafor",
        scenario: Scenario::SlackOnlyContractor,
        exit_in_days: 1,
        summary: "external contractor, Slack guest only",
    },
    Leaver {
        email: "priya.natarajan@example.com",
        name: "Priya Natarajan",
        scenario: Scenario::Mover,
        exit_in_days: 7,
        summary: "mover (Sales to Marketing), keeps some groups",
    },
    Leaver {
        email: "tom.becker@example.com",
        name: "Tom Becker",
        scenario: Scenario::AlreadySuspended,
        exit_in_days: -14,
        summary: "suspended in Google two weeks ago, tokens still live; active elsewhere",
    },
    Leaver {
        email: "alex.chen@example.com",
        name: "Alex Chen",
        scenario: Scenario::DifferentEmail,
        exit_in_days: 3,
        summary: "Salesforce login under an older address (achen@example.com)",
    },
];

pub fn leaver(email: &str) -> Option<&'static Leaver> {
    LEAVERS.iter().find(|l| l.email.eq_ignore_ascii_case(email))
}

/// One person of the demo company.
#[derive(Debug, Clone)]
pub struct TenantPerson {
    /// Stable number, 1-based.
    pub n: u32,
    pub first: String,
    pub last: String,
    pub email: String,
    pub aliases: Vec<String>,
    pub department: &'static str,
    pub scenario: Option<Scenario>,
}

impl TenantPerson {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
}

const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloe", "Diego", "Elif", "Farah", "Gus", "Hana", "Ivan", "Jade", "Kofi",
    "Lucia", "Mateo", "Nadia", "Oscar", "Paula", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wes", "Xia", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Abbott",
    "Bauer",
    "Castro",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Keller",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okonkwo",
    "Petrov",
    "Rossi",
];
pub const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Support",
    "People",
    "Legal",
    "Operations",
];

/// About 300 people: the leavers first, then a deterministic crowd.
pub fn people() -> Vec<TenantPerson> {
    let mut out = Vec::with_capacity(300);
    for (i, l) in LEAVERS.iter().enumerate() {
        let (first, last) = l.name.split_once(' ').expect("leaver names have two parts");
        let aliases = match l.scenario {
            Scenario::DifferentEmail => vec!["achen@example.com".to_string()],
            Scenario::Scheduled => vec!["dana.w@example.com".to_string()],
            _ => Vec::new(),
        };
        out.push(TenantPerson {
            n: i as u32 + 1,
            first: first.to_string(),
            last: last.to_string(),
            email: l.email.to_string(),
            aliases,
            department: DEPARTMENTS[i % DEPARTMENTS.len()],
            scenario: Some(l.scenario),
        });
    }
    let mut k = 0usize;
    while out.len() < 300 {
        let first = FIRST[k % FIRST.len()];
        let last = LAST[(k / FIRST.len() + k) % LAST.len()];
        let mut email = format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        if out.iter().any(|p| p.email == email) {
            email = format!(
                "{}.{}{}@example.com",
                first.to_lowercase(),
                last.to_lowercase(),
                k
            );
        }
        out.push(TenantPerson {
            n: out.len() as u32 + 1,
            first: first.to_string(),
            last: last.to_string(),
            email,
            aliases: Vec::new(),
            department: DEPARTMENTS[k % DEPARTMENTS.len()],
            scenario: None,
        });
        k += 1;
    }
    out
}

/// A synthetic leaver for benchmarks, with this many grants in each app.
/// Only a sandbox started with `Options::bench_grants` has them; the demo
/// tenant never does.
#[derive(Debug, Clone)]
pub struct BenchShape {
    pub email: String,
    /// Google group memberships.
    pub groups: usize,
    /// Google third-party OAuth tokens.
    pub tokens: usize,
    /// Google app-specific passwords.
    pub app_passwords: usize,
    /// Slack sessions.
    pub slack_sessions: usize,
    /// Slack user groups the leaver is in (each with one other member).
    pub slack_groups: usize,
    /// Salesforce `AuthSession`s.
    pub sf_sessions: usize,
    /// Salesforce connected-app `OauthToken`s.
    pub sf_tokens: usize,
    /// Salesforce permission set assignments.
    pub sf_permsets: usize,
    /// Salesforce public group and queue memberships.
    pub sf_groups: usize,
    /// GitHub team memberships.
    pub gh_teams: usize,
    /// GitHub SSO-authorized credentials.
    pub gh_credentials: usize,
    /// Extra people for a mass offboarding (`leaver.0001@example.com`, …),
    /// each with an ordinary employee's footprint in Google, Salesforce,
    /// Okta and the SCIM apps ([`crowd`]).
    pub crowd: usize,
}

impl Default for BenchShape {
    fn default() -> Self {
        Self {
            email: "bench.leaver@example.com".into(),
            groups: 600,
            tokens: 300,
            app_passwords: 100,
            slack_sessions: 100,
            slack_groups: 100,
            sf_sessions: 100,
            sf_tokens: 100,
            sf_permsets: 100,
            sf_groups: 100,
            gh_teams: 100,
            gh_credentials: 100,
            crowd: 0,
        }
    }
}

impl BenchShape {
    /// The bench leaver's number in the tenant (past the demo people).
    pub const PERSON_N: u32 = 5000;
    /// The first crowd person's number.
    pub const CROWD_N: u32 = 6000;

    /// The bench leaver as a person of the tenant, for the apps that give
    /// them an ordinary footprint rather than [`BenchShape`]'s counts.
    pub fn person(&self) -> TenantPerson {
        TenantPerson {
            n: Self::PERSON_N,
            first: "Bench".into(),
            last: "Leaver".into(),
            email: self.email.clone(),
            aliases: Vec::new(),
            department: DEPARTMENTS[0],
            scenario: None,
        }
    }
}

/// The mass-offboarding crowd of a bench tenant (none without one).
pub fn crowd(bench: Option<&BenchShape>) -> Vec<TenantPerson> {
    let n = bench.map_or(0, |b| b.crowd);
    (0..n)
        .map(|i| TenantPerson {
            n: BenchShape::CROWD_N + i as u32,
            first: FIRST[i % FIRST.len()].to_string(),
            last: LAST[(i / FIRST.len()) % LAST.len()].to_string(),
            email: crowd_email(i),
            aliases: Vec::new(),
            department: DEPARTMENTS[i % DEPARTMENTS.len()],
            scenario: None,
        })
        .collect()
}

/// The address of crowd person `i` (0-based).
pub fn crowd_email(i: usize) -> String {
    format!("leaver.{:04}@example.com", i + 1)
}

/// The demo people, then the bench leaver as a person, then the crowd.
pub fn people_for(bench: Option<&BenchShape>) -> Vec<TenantPerson> {
    let mut out = people();
    if let Some(b) = bench {
        out.push(b.person());
    }
    out.extend(crowd(bench));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_is_deterministic_and_unique() {
        let a = people();
        let b = people();
        assert_eq!(a.len(), 300);
        assert_eq!(
            a.iter().map(|p| &p.email).collect::<Vec<_>>(),
            b.iter().map(|p| &p.email).collect::<Vec<_>>()
        );
        let mut emails: Vec<_> = a.iter().map(|p| p.email.clone()).collect();
        emails.sort();
        emails.dedup();
        assert_eq!(emails.len(), 300);
        assert!(LEAVERS.len() >= 5);
    }
}
