//! The fleet level: every leaver, not one at a time. The roster from HR,
//! exit times and the policy that acts on them, what the ledger says about
//! each leaver, and the evidence for an audit period; the orphan sweep and
//! batches of leavers with their guardrails, which read [`People`]: the
//! small shape they need (`email,status,aliases,manager`). The command line and
//! the console are views of it; the engine does the work per leaver.

pub mod batch;
pub mod history;
pub mod period;
pub mod policy;
pub mod roster;
pub mod sweep;

pub use policy::{Decision, Mode, PolicyConfig, Scope};
pub use roster::{Entry, LineError, Roster, RosterConfig, Status};

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::sanitize::clean_max;

/// Where a person stands according to HR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RosterStatus {
    Active,
    Leaving,
    Left,
}

impl RosterStatus {
    pub fn parse(s: &str) -> Option<RosterStatus> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Some(RosterStatus::Active),
            "leaving" => Some(RosterStatus::Leaving),
            "left" => Some(RosterStatus::Left),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RosterStatus::Active => "active",
            RosterStatus::Leaving => "leaving",
            RosterStatus::Left => "left",
        }
    }
}

/// One person of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterEntry {
    /// Primary address, lower case.
    pub email: String,
    pub status: RosterStatus,
    /// Other addresses of the person, lower case.
    pub aliases: Vec<String>,
    /// The manager's address (the owner of a guest, the target of a data
    /// hand-over), lower case.
    pub manager: Option<String>,
}

impl RosterEntry {
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.email.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// A roster: its people, and the lines that did not parse.
#[derive(Debug, Clone, Default)]
pub struct People {
    pub entries: Vec<RosterEntry>,
    /// `FILE line N: why`, for each line that was skipped.
    pub problems: Vec<String>,
    index: HashMap<String, usize>,
}

fn is_address(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && s.len() <= 254
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl People {
    pub fn new(entries: Vec<RosterEntry>) -> People {
        let mut r = People {
            entries,
            ..People::default()
        };
        r.reindex();
        r
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, e) in self.entries.iter().enumerate() {
            for a in e.addresses() {
                self.index.entry(a.to_string()).or_insert(i);
            }
        }
    }

    /// The person one of whose addresses this is.
    pub fn find(&self, address: &str) -> Option<&RosterEntry> {
        let a = address.trim().to_ascii_lowercase();
        self.index.get(&a).map(|i| &self.entries[*i])
    }

    /// The person any of these addresses belongs to.
    pub fn find_any<'a>(
        &self,
        addresses: impl IntoIterator<Item = &'a str>,
    ) -> Option<&RosterEntry> {
        addresses.into_iter().find_map(|a| self.find(a))
    }

    /// Reads a CSV roster with the header `email,status,aliases,manager`
    /// (`aliases` and `manager` may be left out or empty; several aliases
    /// are separated by `;` or spaces). A line that does not parse is
    /// skipped and named in [`People::problems`]; the rest still load.
    pub fn from_csv(name: &str, text: &str) -> Result<People, String> {
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| format!("{name}: header: {e}"))?
            .clone();
        let col = |n: &str| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(n))
        };
        let email_col = col("email").ok_or_else(|| {
            format!(
                "{name}: header: expected columns email,status,aliases,manager, found no `email`"
            )
        })?;
        let status_col = col("status").ok_or_else(|| {
            format!(
                "{name}: header: expected columns email,status,aliases,manager, found no `status`"
            )
        })?;
        let aliases_col = col("aliases");
        let manager_col = col("manager");
        let mut roster = People::default();
        for rec in rdr.records() {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    roster.problems.push(format!(
                        "{name} line {line}: {}",
                        clean_max(&e.to_string(), 120)
                    ));
                    continue;
                }
            };
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let field = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("").trim();
            let email = field(Some(email_col)).to_ascii_lowercase();
            if email.is_empty() {
                roster
                    .problems
                    .push(format!("{name} line {line}: no email"));
                continue;
            }
            if !is_address(&email) {
                roster.problems.push(format!(
                    "{name} line {line}: `{}` is not an email address",
                    clean_max(&email, 80)
                ));
                continue;
            }
            let Some(status) = RosterStatus::parse(field(Some(status_col))) else {
                roster.problems.push(format!(
                    "{name} line {line}: status `{}`: expected active, leaving or left",
                    clean_max(field(Some(status_col)), 40)
                ));
                continue;
            };
            let mut aliases = Vec::new();
            let mut bad = None;
            for a in field(aliases_col)
                .split([';', ' ', ','])
                .filter(|a| !a.is_empty())
            {
                let a = a.to_ascii_lowercase();
                if !is_address(&a) {
                    bad = Some(a);
                    break;
                }
                if a != email && !aliases.contains(&a) {
                    aliases.push(a);
                }
            }
            if let Some(a) = bad {
                roster.problems.push(format!(
                    "{name} line {line}: alias `{}` is not an email address",
                    clean_max(&a, 80)
                ));
                continue;
            }
            let manager = field(manager_col).to_ascii_lowercase();
            if !manager.is_empty() && !is_address(&manager) {
                roster.problems.push(format!(
                    "{name} line {line}: manager `{}` is not an email address",
                    clean_max(&manager, 80)
                ));
                continue;
            }
            roster.entries.push(RosterEntry {
                email,
                status,
                aliases,
                manager: (!manager.is_empty()).then_some(manager),
            });
        }
        roster.reindex();
        Ok(roster)
    }

    /// [`People::from_csv`] on a file.
    pub fn load(path: &Path) -> Result<People, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("roster {}: {e}", path.display()))?;
        People::from_csv(&path.display().to_string(), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_roster_skips_bad_lines_and_keeps_the_rest() {
        let text = "email,status,aliases,manager\n\
                    Ann@Example.com,left,a.old@example.com;ann2@example.com,boss@example.com\n\
                    ,active,,\n\
                    bob@example.com,gone,,\n\
                    carl@example.com,active,,not-an-address\n\
                    dora@example.com,leaving\n";
        let r = People::from_csv("hr.csv", text).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].email, "ann@example.com");
        assert_eq!(r.entries[0].status, RosterStatus::Left);
        assert_eq!(r.entries[0].manager.as_deref(), Some("boss@example.com"));
        assert_eq!(
            r.find("ANN2@example.com").map(|e| e.email.as_str()),
            Some("ann@example.com")
        );
        assert_eq!(r.entries[1].status, RosterStatus::Leaving);
        assert_eq!(
            r.problems,
            vec![
                "hr.csv line 3: no email",
                "hr.csv line 4: status `gone`: expected active, leaving or left",
                "hr.csv line 5: manager `not-an-address` is not an email address",
            ]
        );
    }

    #[test]
    fn a_roster_without_an_email_column_is_refused() {
        let e = People::from_csv("hr.csv", "mail,status\nx@y.z,left\n").unwrap_err();
        assert!(e.contains("no `email`"), "{e}");
    }
}
