//! Exit times and the policy that acts on them: who is due, and what a run
//! does for each leaver, decided from the roster, the clock and the
//! ledger's history (so that a second run does nothing new).
//!
//! `[policy] mode`: `urgent` revokes everything once the exit time has
//! passed; `scheduled` cuts sessions and tokens (phase 1 kinds) at the exit
//! time and the rest `grace_hours` later. `sla_hours` is the target from
//! exit to all closed, for the period report.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::history::{CaseHistory, OpenGrant, cuts_access};
use super::roster::Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Everything at once when the exit time has passed.
    #[default]
    Urgent,
    /// Sessions and tokens at the exit time, the rest after the grace.
    Scheduled,
}

/// `[policy]` in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub mode: Mode,
    /// Scheduled mode: hours between the exit time and phases 2 and 3.
    pub grace_hours: u32,
    /// Target hours from the exit time to all access closed.
    pub sla_hours: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Urgent,
            grace_hours: 24,
            sla_hours: 24,
        }
    }
}

impl PolicyConfig {
    pub fn grace(&self) -> Duration {
        Duration::hours(i64::from(self.grace_hours))
    }

    pub fn sla(&self) -> Duration {
        Duration::hours(i64::from(self.sla_hours))
    }
}

/// What a run covers for a leaver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every kind, in phases.
    All,
    /// Phase 1 kinds only: sessions, OAuth grants, app passwords, backup
    /// codes, API keys, devices.
    CutAccess,
}

impl Scope {
    pub fn covers(self, g: &OpenGrant) -> bool {
        match self {
            Scope::All => true,
            Scope::CutAccess => cuts_access(g.kind),
        }
    }

    /// The engine's selection for this scope.
    pub fn selection(self) -> crate::engine::Selection {
        crate::engine::Selection {
            kinds: match self {
                Scope::All => Vec::new(),
                Scope::CutAccess => crate::model::GrantKind::ALL
                    .into_iter()
                    .filter(|k| cuts_access(*k))
                    .collect(),
            },
            ..crate::engine::Selection::default()
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scope::All => "everything",
            Scope::CutAccess => "sessions and tokens (phase 1)",
        }
    }
}

/// What the policy says for one roster entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Active, or the exit time is ahead.
    NotDue { why: String },
    /// Discover and revoke this scope.
    Run { scope: Scope, why: String },
    /// Nothing new to do; `left` lists what stays open for a person.
    Skip { why: String, left: Vec<String> },
}

/// How the exit time stands against now: "due in 2h", "overdue 3h".
pub fn due_text(exit: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = exit - now;
    if d > Duration::zero() {
        format!("due in {}", span(d))
    } else {
        format!("overdue {}", span(-d))
    }
}

/// A short span: 45m, 3h, 2d 4h.
pub fn span(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    if m < 60 {
        format!("{m}m")
    } else if m < 48 * 60 {
        let (h, rest) = (m / 60, m % 60);
        if rest == 0 || h >= 10 {
            format!("{h}h")
        } else {
            format!("{h}h {rest}m")
        }
    } else {
        let (days, h) = (m / (24 * 60), (m / 60) % 24);
        if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d {h}h")
        }
    }
}

/// The scope due at `now` for a leaver whose exit time is `exit` (None:
/// not due yet).
pub fn scope_at(policy: &PolicyConfig, exit: DateTime<Utc>, now: DateTime<Utc>) -> Option<Scope> {
    if now < exit {
        return None;
    }
    match policy.mode {
        Mode::Urgent => Some(Scope::All),
        Mode::Scheduled if now >= exit + policy.grace() => Some(Scope::All),
        Mode::Scheduled => Some(Scope::CutAccess),
    }
}

/// Decides for one roster entry, from the ledger's history of the case.
pub fn decide(
    policy: &PolicyConfig,
    entry: &Entry,
    history: Option<&CaseHistory>,
    now: DateTime<Utc>,
) -> Decision {
    if !entry.status.is_leaver() {
        return Decision::NotDue {
            why: "active".into(),
        };
    }
    let scope = match entry.exit_time {
        Some(exit) => match scope_at(policy, exit, now) {
            Some(s) => s,
            None => {
                return Decision::NotDue {
                    why: format!("{} ({})", due_text(exit, now), ts(exit)),
                };
            }
        },
        // Gone without a date: due now. Leaving without one: not yet.
        None if entry.status == super::roster::Status::Left => Scope::All,
        None => {
            return Decision::NotDue {
                why: "leaving, no exit time in the roster".into(),
            };
        }
    };
    let Some(h) = history else {
        return Decision::Run {
            scope,
            why: "no record in the ledger yet".into(),
        };
    };
    let unsettled = h.unsettled_reads();
    if !unsettled.is_empty() {
        return Decision::Run {
            scope,
            why: format!("the last read was not complete ({})", unsettled.join("; ")),
        };
    }
    let open: Vec<&OpenGrant> = h.open.iter().filter(|g| scope.covers(g)).collect();
    let actionable: Vec<&&OpenGrant> = open.iter().filter(|g| !g.state.needs_a_person()).collect();
    if !actionable.is_empty() {
        return Decision::Run {
            scope,
            why: format!(
                "{} grant(s) still {} in the ledger",
                actionable.len(),
                names(actionable.iter().map(|g| g.state.as_str()))
            ),
        };
    }
    // Grants outside the scope that were never requested: phase 2 and 3 of
    // a scheduled leaver still in the grace.
    let later = h.open.iter().filter(|g| !scope.covers(g)).count();
    let left: Vec<String> = open
        .iter()
        .map(|g| {
            format!(
                "{} {} ({}): {}",
                g.state.as_str(),
                g.key,
                g.label,
                g.reason.as_deref().unwrap_or("")
            )
        })
        .collect();
    let mut why = if left.is_empty() {
        "nothing live left in the ledger".to_string()
    } else {
        format!(
            "nothing new to do: {} item(s) wait for a person (`offboard done` after a manual step)",
            left.len()
        )
    };
    if later > 0
        && let Some(exit) = entry.exit_time
    {
        why.push_str(&format!(
            "; {later} more at the end of the grace ({})",
            ts(exit + policy.grace())
        ));
    }
    Decision::Skip { why, left }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = it.collect();
    v.sort();
    v.dedup();
    v.join("/")
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Runs the policy once over the roster, as `offboard run --due --yes`
/// does: each leaver the policy says to run (given the ledger's history,
/// so a second run does nothing new) is revoked in the policy's scope,
/// with their data handed over to their manager. One line per leaver acted
/// on.
pub async fn run_due(
    engine: &crate::engine::Engine,
    roster: &super::Roster,
    policy: &PolicyConfig,
    records: &[crate::evidence::Record],
    now: DateTime<Utc>,
) -> Vec<String> {
    use crate::sanitize::{clean, clean_max};
    let histories = super::history::cases(records);
    let mut out = Vec::new();
    for e in roster.leavers() {
        let h = histories
            .get(&e.email)
            .or_else(|| e.aliases.iter().find_map(|a| histories.get(a)));
        let Decision::Run { scope, why } = decide(policy, e, h, now) else {
            continue;
        };
        if let Some(m) = &e.manager
            && let Err(err) = engine.set_hand_over(&e.email, m).await
        {
            out.push(format!(
                "{}: manager {}: {err} (the hand-over stays a manual step)",
                clean(&e.email),
                clean(m)
            ));
        }
        // A fresh lookup, so that the hand-over to the manager is planned.
        if let Err(err) = engine.discover(&e.email).await {
            out.push(format!(
                "{}: {}",
                clean(&e.email),
                clean_max(&err.to_string(), 200)
            ));
            continue;
        }
        let line = match engine.revoke(&e.email, &scope.selection()).await {
            Ok(s) => format!(
                "{}: {} ({}): revoked {}: {} verified, {} acknowledged, {} left",
                clean(&e.email),
                e.exit_time
                    .map(|x| due_text(x, now))
                    .unwrap_or_else(|| "left".into()),
                clean_max(&why, 80),
                scope.describe(),
                s.verified,
                s.acknowledged,
                s.live + s.removing + s.unconfirmed + s.failed + s.manual
            ),
            Err(err) => format!("{}: {}", clean(&e.email), clean_max(&err.to_string(), 200)),
        };
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::roster::Status;

    fn entry(status: Status, exit: Option<DateTime<Utc>>) -> Entry {
        Entry {
            line: 2,
            email: "ada@example.com".into(),
            name: None,
            status,
            exit_time: exit,
            manager: None,
            kind: None,
            aliases: Vec::new(),
        }
    }

    #[test]
    fn scopes_by_mode_and_grace() {
        let now = Utc::now();
        let urgent = PolicyConfig::default();
        let sched = PolicyConfig {
            mode: Mode::Scheduled,
            grace_hours: 24,
            sla_hours: 24,
        };
        assert_eq!(scope_at(&urgent, now + Duration::hours(1), now), None);
        assert_eq!(
            scope_at(&urgent, now - Duration::days(9), now),
            Some(Scope::All)
        );
        assert_eq!(
            scope_at(&sched, now - Duration::hours(2), now),
            Some(Scope::CutAccess)
        );
        assert_eq!(
            scope_at(&sched, now - Duration::days(3), now),
            Some(Scope::All),
            "days in the past: still caught, everything"
        );
        let d = decide(&urgent, &entry(Status::Active, None), None, now);
        assert!(matches!(d, Decision::NotDue { .. }));
        let d = decide(&urgent, &entry(Status::Leaving, None), None, now);
        assert!(matches!(d, Decision::NotDue { .. }));
        let d = decide(&urgent, &entry(Status::Left, None), None, now);
        assert_eq!(
            d,
            Decision::Run {
                scope: Scope::All,
                why: "no record in the ledger yet".into()
            }
        );
    }

    #[test]
    fn spans_read_naturally() {
        let now = Utc::now();
        assert_eq!(due_text(now + Duration::minutes(121), now), "due in 2h 1m");
        assert_eq!(due_text(now - Duration::hours(3), now), "overdue 3h");
        assert_eq!(due_text(now - Duration::hours(76), now), "overdue 3d 4h");
        assert_eq!(span(Duration::minutes(5)), "5m");
    }
}
