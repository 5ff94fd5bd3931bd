//! The roster: HR's file of people with a status and an exit time, as CSV
//! with a header or as JSON Lines, from a path or from stdin (`-`).
//!
//! Columns (renameable in `[roster] columns`): `email`, `name`, `status`
//! (`active`, `leaving`, `left`), `exit_time` (RFC 3339, or `YYYY-MM-DD` /
//! `YYYY-MM-DD HH:MM` in `[roster] time_zone`, default UTC; a bare date is
//! the start of that day), `manager`, and the optional `type` and `aliases`
//! (separated by `;`, `,` or spaces).
//!
//! Validation is line by line: a bad line is kept as a [`LineError`] with
//! its number and reason, and the rest still loads. Nothing is built from a
//! line that did not parse, so nothing is ever revoked because of one.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::sanitize::clean_max;

/// `[roster]` in the config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RosterConfig {
    /// The file (relative to the config's folder), or `-` for stdin.
    pub path: Option<PathBuf>,
    /// Column names of the HR export, where they differ from the defaults.
    pub columns: Columns,
    /// Time zone of exit times written as a date (IANA name, e.g.
    /// `Europe/Berlin`). Default: UTC.
    pub time_zone: Option<String>,
}

/// The roster's column names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub email: String,
    pub name: String,
    pub status: String,
    pub exit_time: String,
    pub manager: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub aliases: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            email: "email".into(),
            name: "name".into(),
            status: "status".into(),
            exit_time: "exit_time".into(),
            manager: "manager".into(),
            kind: "type".into(),
            aliases: "aliases".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Leaving,
    Left,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Status::Active),
            "leaving" => Some(Status::Leaving),
            "left" => Some(Status::Left),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Leaving => "leaving",
            Status::Left => "left",
        }
    }

    /// `leaving` or `left`.
    pub fn is_leaver(self) -> bool {
        !matches!(self, Status::Active)
    }
}

/// One person of the roster (from a line that parsed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The line it came from (1-based; the CSV header is line 1).
    pub line: usize,
    /// Lower-case, trimmed.
    pub email: String,
    pub name: Option<String>,
    pub status: Status,
    pub exit_time: Option<DateTime<Utc>>,
    pub manager: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub aliases: Vec<String>,
}

/// A line that did not parse: `roster.csv line 4: no email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub source: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.source, self.line, self.reason)
    }
}

/// A roster that could not be read at all (no file, no email column...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("roster {file}: {reason}")]
pub struct RosterError {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Roster {
    /// The file name, or `stdin`.
    pub source: String,
    pub entries: Vec<Entry>,
    pub errors: Vec<LineError>,
}

/// A roster's people by every address (primary and aliases, lower case),
/// for matching many accounts at once.
pub struct Index<'a> {
    by_address: HashMap<&'a str, &'a Entry>,
}

impl<'a> Index<'a> {
    /// The person one of whose addresses this is.
    pub fn find(&self, address: &str) -> Option<&'a Entry> {
        self.by_address
            .get(address.trim().to_ascii_lowercase().as_str())
            .copied()
    }

    /// The person any of these addresses belongs to.
    pub fn find_any<'b>(&self, addresses: impl IntoIterator<Item = &'b str>) -> Option<&'a Entry> {
        addresses.into_iter().find_map(|a| self.find(a))
    }
}

impl Roster {
    pub fn index(&self) -> Index<'_> {
        let mut by_address = HashMap::new();
        for e in &self.entries {
            for a in std::iter::once(&e.email).chain(e.aliases.iter()) {
                by_address.entry(a.as_str()).or_insert(e);
            }
        }
        Index { by_address }
    }

    pub fn get(&self, email: &str) -> Option<&Entry> {
        let e = email.trim().to_ascii_lowercase();
        self.entries
            .iter()
            .find(|x| x.email == e || x.aliases.contains(&e))
    }

    /// People whose status is `leaving` or `left`.
    pub fn leavers(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.status.is_leaver())
    }
}

/// The time zone of dates without one.
#[derive(Debug, Clone, Copy)]
pub struct Zone(pub Option<chrono_tz::Tz>);

impl Zone {
    pub fn parse(name: Option<&str>) -> Result<Zone, String> {
        match name.map(str::trim).filter(|n| !n.is_empty()) {
            None => Ok(Zone(None)),
            Some(n) if n.eq_ignore_ascii_case("utc") => Ok(Zone(None)),
            Some(n) => n
                .parse::<chrono_tz::Tz>()
                .map(|tz| Zone(Some(tz)))
                .map_err(|_| {
                    format!(
                        "time_zone `{}`: not an IANA time zone name (e.g. Europe/Berlin)",
                        clean_max(n, 60)
                    )
                }),
        }
    }

    fn local(&self, t: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.0 {
            None => Some(Utc.from_utc_datetime(&t)),
            // A time skipped by a DST change does not exist; an ambiguous
            // one (the hour repeated in autumn) is taken at its first.
            Some(tz) => tz
                .from_local_datetime(&t)
                .earliest()
                .map(|d| d.with_timezone(&Utc)),
        }
    }

    /// RFC 3339, or `YYYY-MM-DD` (start of the day), `YYYY-MM-DD HH:MM[:SS]`
    /// or `YYYY-MM-DDTHH:MM[:SS]` in this zone.
    pub fn parse_time(&self, s: &str) -> Result<DateTime<Utc>, String> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(t.with_timezone(&Utc));
        }
        let naive = NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .or_else(|| {
                [
                    "%Y-%m-%d %H:%M:%S",
                    "%Y-%m-%d %H:%M",
                    "%Y-%m-%dT%H:%M:%S",
                    "%Y-%m-%dT%H:%M",
                ]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            });
        match naive {
            Some(t) => self.local(t).ok_or_else(|| {
                format!(
                    "`{}` does not exist in the time zone (a daylight-saving gap)",
                    clean_max(s, 40)
                )
            }),
            None => Err(format!(
                "`{}`: expected RFC 3339 (2026-11-30T17:00:00+01:00) or a date (2026-11-30)",
                clean_max(s, 40)
            )),
        }
    }
}

/// Where the roster is read from.
#[derive(Debug, Clone)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    pub fn from_arg(p: &Path) -> Source {
        if p.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(p.to_path_buf())
        }
    }

    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "stdin".into(),
            Source::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }
}

/// Reads and parses a roster.
pub fn load(source: &Source, cfg: &RosterConfig) -> Result<Roster, RosterError> {
    let name = source.name();
    let err = |reason: String| RosterError {
        file: name.clone(),
        reason,
    };
    let zone = Zone::parse(cfg.time_zone.as_deref()).map_err(err)?;
    let bytes = match source {
        Source::Stdin => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| err(format!("reading stdin: {e}")))?;
            b
        }
        Source::File(p) => std::fs::read(p).map_err(|e| err(format!("{}: {e}", p.display())))?,
    };
    let jsonl = match source {
        Source::File(p) => match p.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson" | "json") => true,
            Some("csv") => false,
            _ => sniff_jsonl(&bytes),
        },
        Source::Stdin => sniff_jsonl(&bytes),
    };
    if jsonl {
        parse_jsonl(&name, &bytes, &cfg.columns, &zone)
    } else {
        parse_csv(&name, &bytes, &cfg.columns, &zone)
    }
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

fn sniff_jsonl(b: &[u8]) -> bool {
    strip_bom(b)
        .iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|c| *c == b'{')
}

/// The fields of one line, by role, before validation.
#[derive(Default)]
struct Raw {
    email: Option<String>,
    name: Option<String>,
    status: Option<String>,
    exit_time: Option<String>,
    manager: Option<String>,
    kind: Option<String>,
    aliases: Vec<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn split_aliases(s: &str) -> Vec<String> {
    s.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

fn valid_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !a.chars().any(|c| c.is_whitespace() || c.is_control())
                && a.matches('@').count() == 1
        }
        None => false,
    }
}

/// Validates one line's fields into an entry, or says why not.
fn validate(line: usize, raw: Raw, cols: &Columns, zone: &Zone) -> Result<Entry, String> {
    let email = nonempty(raw.email)
        .ok_or_else(|| "no email".to_string())?
        .to_ascii_lowercase();
    if !valid_address(&email) {
        return Err(format!(
            "{} `{}` is not an email address",
            cols.email,
            clean_max(&email, 60)
        ));
    }
    let status_text = nonempty(raw.status).ok_or_else(|| "no status".to_string())?;
    let status = Status::parse(&status_text).ok_or_else(|| {
        format!(
            "{} `{}`: expected active, leaving or left",
            cols.status,
            clean_max(&status_text, 30)
        )
    })?;
    let exit_time = match nonempty(raw.exit_time) {
        Some(t) => Some(
            zone.parse_time(&t)
                .map_err(|e| format!("{}: {e}", cols.exit_time))?,
        ),
        None => None,
    };
    let manager = nonempty(raw.manager).map(|m| m.to_ascii_lowercase());
    if let Some(m) = manager.as_deref().filter(|m| !valid_address(m)) {
        return Err(format!(
            "{} `{}` is not an email address",
            cols.manager,
            clean_max(m, 60)
        ));
    }
    let mut aliases = Vec::new();
    for a in raw.aliases {
        if !valid_address(&a) {
            return Err(format!(
                "{}: `{}` is not an email address",
                cols.aliases,
                clean_max(&a, 60)
            ));
        }
        if a != email && !aliases.contains(&a) {
            aliases.push(a);
        }
    }
    Ok(Entry {
        line,
        email,
        name: nonempty(raw.name),
        status,
        exit_time,
        manager,
        kind: nonempty(raw.kind),
        aliases,
    })
}

/// Adds a validated line, refusing a second line for the same person.
fn push(
    roster: &mut Roster,
    seen: &mut HashMap<String, usize>,
    line: usize,
    r: Result<Entry, String>,
) {
    let entry = match r {
        Ok(e) => e,
        Err(reason) => {
            roster.errors.push(LineError {
                source: roster.source.clone(),
                line,
                reason,
            });
            return;
        }
    };
    let addresses = std::iter::once(&entry.email).chain(entry.aliases.iter());
    for a in addresses {
        if let Some(first) = seen.get(a) {
            roster.errors.push(LineError {
                source: roster.source.clone(),
                line,
                reason: format!(
                    "{} is already on line {first}; this line is ignored",
                    clean_max(a, 60)
                ),
            });
            return;
        }
    }
    for a in std::iter::once(&entry.email).chain(entry.aliases.iter()) {
        seen.insert(a.clone(), line);
    }
    roster.entries.push(entry);
}

pub fn parse_csv(
    source: &str,
    bytes: &[u8],
    cols: &Columns,
    zone: &Zone,
) -> Result<Roster, RosterError> {
    let err = |reason: String| RosterError {
        file: source.to_string(),
        reason,
    };
    let body = strip_bom(bytes);
    // The physical line of a byte offset (the reader's own line count
    // skips blank lines).
    let line_at = |p: &csv::Position| {
        let mut end = (p.byte() as usize).min(body.len());
        // A record's position is where the reader started: before any
        // blank lines it skipped.
        while end < body.len() && matches!(body[end], b'\n' | b'\r') {
            end += 1;
        }
        body[..end].iter().filter(|b| **b == b'\n').count() + 1
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let headers = rdr
        .headers()
        .map_err(|e| err(format!("header: {e}")))?
        .clone();
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name.trim()))
    };
    let listed = || {
        headers
            .iter()
            .map(|h| format!("`{}`", clean_max(h, 40)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let email_i = find(&cols.email).ok_or_else(|| {
        err(format!(
            "no `{}` column in the header (columns: {}); set [roster] columns.email",
            cols.email,
            listed()
        ))
    })?;
    let status_i = find(&cols.status).ok_or_else(|| {
        err(format!(
            "no `{}` column in the header (columns: {}); set [roster] columns.status",
            cols.status,
            listed()
        ))
    })?;
    let (name_i, exit_i, manager_i, kind_i, aliases_i) = (
        find(&cols.name),
        find(&cols.exit_time),
        find(&cols.manager),
        find(&cols.kind),
        find(&cols.aliases),
    );
    let mut roster = Roster {
        source: source.to_string(),
        ..Roster::default()
    };
    let mut seen = HashMap::new();
    let mut rec = csv::StringRecord::new();
    // For a record whose own position is unknown: where the reader is.
    let mut next_line = line_at(rdr.position());
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map(line_at).unwrap_or(next_line);
                next_line = line_at(rdr.position());
                if rec.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).map(str::to_string);
                let raw = Raw {
                    email: get(Some(email_i)),
                    name: get(name_i),
                    status: get(Some(status_i)),
                    exit_time: get(exit_i),
                    manager: get(manager_i),
                    kind: get(kind_i),
                    aliases: get(aliases_i)
                        .map(|a| split_aliases(&a))
                        .unwrap_or_default(),
                };
                push(
                    &mut roster,
                    &mut seen,
                    line,
                    validate(line, raw, cols, zone),
                );
            }
            Err(e) => {
                let line = e.position().map(line_at).unwrap_or(next_line);
                next_line = line_at(rdr.position());
                let reason = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("{len} field(s) where the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
                    _ => format!("unreadable: {}", clean_max(&e.to_string(), 120)),
                };
                roster.errors.push(LineError {
                    source: source.to_string(),
                    line,
                    reason,
                });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
    Ok(roster)
}

pub fn parse_jsonl(
    source: &str,
    bytes: &[u8],
    cols: &Columns,
    zone: &Zone,
) -> Result<Roster, RosterError> {
    let mut roster = Roster {
        source: source.to_string(),
        ..Roster::default()
    };
    let mut seen = HashMap::new();
    for (i, line) in strip_bom(bytes).split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let fail = |roster: &mut Roster, reason: String| {
            roster.errors.push(LineError {
                source: source.to_string(),
                line: n,
                reason,
            })
        };
        let Ok(text) = std::str::from_utf8(line) else {
            fail(&mut roster, "not valid UTF-8".into());
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => {
                fail(&mut roster, "not a JSON object".into());
                continue;
            }
            Err(e) => {
                fail(&mut roster, format!("not JSON: {e}"));
                continue;
            }
        };
        let field = |name: &str| -> Result<Option<String>, String> {
            let v = obj
                .iter()
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name.trim()))
                .map(|(_, v)| v);
            match v {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("`{name}` is not a string")),
            }
        };
        let raw = (|| -> Result<Raw, String> {
            let aliases = match obj
                .iter()
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(cols.aliases.trim()))
                .map(|(_, v)| v)
            {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::String(s)) => split_aliases(s),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(|s| s.trim().to_ascii_lowercase())
                            .ok_or_else(|| format!("`{}`: not a list of strings", cols.aliases))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(format!("`{}`: not a list of strings", cols.aliases)),
            };
            Ok(Raw {
                email: field(&cols.email)?,
                name: field(&cols.name)?,
                status: field(&cols.status)?,
                exit_time: field(&cols.exit_time)?,
                manager: field(&cols.manager)?,
                kind: field(&cols.kind)?,
                aliases,
            })
        })();
        let r = raw.and_then(|raw| validate(n, raw, cols, zone));
        push(&mut roster, &mut seen, n, r);
    }
    Ok(roster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> Zone {
        Zone(None)
    }

    #[test]
    fn csv_with_bad_lines_keeps_the_good_ones() {
        let text = "\u{feff}email,name,status,exit_time,manager\n\
            ada@example.com,\"Abbott, Ada\",leaving,2026-11-30T17:00:00Z,boss@example.com\n\
            ben@example.com,Ben,left,2026-11-01,\n\
            ,No Email,left,2026-11-01,\n\
            chloe@example.com,Chloe,gone,2026-11-01,\n\
            diego@example.com,Diego,leaving,next tuesday,\n\
            elif@example.com,Elif,active\n\
            \n\
            ada@example.com,Ada again,active,,\n\
            farah@example.com,\"Farah \"\"F\"\" H\",active,,\n";
        let r = parse_csv("roster.csv", text.as_bytes(), &Columns::default(), &utc()).unwrap();
        let emails: Vec<&str> = r.entries.iter().map(|e| e.email.as_str()).collect();
        assert_eq!(
            emails,
            ["ada@example.com", "ben@example.com", "farah@example.com"]
        );
        assert_eq!(r.entries[0].name.as_deref(), Some("Abbott, Ada"));
        assert_eq!(r.entries[0].line, 2);
        assert_eq!(r.entries[0].manager.as_deref(), Some("boss@example.com"));
        assert_eq!(r.entries[2].name.as_deref(), Some("Farah \"F\" H"));
        assert_eq!(
            r.entries[1].exit_time.unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        let errs: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs[0], "roster.csv line 4: no email");
        assert!(
            errs[1].starts_with("roster.csv line 5: status `gone`"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("roster.csv line 6: exit_time:"),
            "{errs:?}"
        );
        assert_eq!(
            errs[3],
            "roster.csv line 7: 3 field(s) where the header has 5"
        );
        assert!(
            errs[4].starts_with("roster.csv line 9: ada@example.com is already on line 2"),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 5);
    }

    #[test]
    fn renamed_columns_and_a_time_zone() {
        let cols = Columns {
            email: "Work Email".into(),
            exit_time: "Termination Date".into(),
            status: "Status".into(),
            aliases: "Other Emails".into(),
            ..Columns::default()
        };
        let zone = Zone::parse(Some("Europe/Berlin")).unwrap();
        let text = "Employee,Work Email,Status,Termination Date,Other Emails\n\
            Ada,Ada@Example.com,Leaving,2026-07-01,\"a@example.com; ada.a@example.com\"\n\
            Ben,ben@example.com,left,2026-12-01 18:30,\n";
        let r = parse_csv("hr.csv", text.as_bytes(), &cols, &zone).unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.entries[0].email, "ada@example.com");
        assert_eq!(r.entries[0].aliases, ["a@example.com", "ada.a@example.com"]);
        // Summer: Berlin is UTC+2; winter: UTC+1.
        assert_eq!(
            r.entries[0].exit_time.unwrap().to_rfc3339(),
            "2026-06-30T22:00:00+00:00"
        );
        assert_eq!(
            r.entries[1].exit_time.unwrap().to_rfc3339(),
            "2026-12-01T17:30:00+00:00"
        );
        assert_eq!(r.get("a@example.com").unwrap().email, "ada@example.com");
    }

    #[test]
    fn managers_are_addresses_and_the_index_finds_aliases() {
        let text = "email,status,aliases,manager\n\
            ann@example.com,left,a.old@example.com;ann2@example.com,Boss@Example.com\n\
            carl@example.com,active,,not-an-address\n";
        let r = parse_csv("hr.csv", text.as_bytes(), &Columns::default(), &utc()).unwrap();
        assert_eq!(r.entries[0].manager.as_deref(), Some("boss@example.com"));
        assert_eq!(
            r.errors[0].to_string(),
            "hr.csv line 3: manager `not-an-address` is not an email address"
        );
        let idx = r.index();
        assert_eq!(
            idx.find("ANN2@example.com").unwrap().email,
            "ann@example.com"
        );
        assert!(idx.find("carl@example.com").is_none());
    }

    #[test]
    fn a_missing_email_column_is_a_file_error() {
        let text = "mail,status\nada@example.com,left\n";
        let e = parse_csv("roster.csv", text.as_bytes(), &Columns::default(), &utc()).unwrap_err();
        assert!(e.to_string().contains("no `email` column"), "{e}");
        assert!(Zone::parse(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn json_lines_with_bad_lines() {
        let text = "{\"email\":\"ada@example.com\",\"status\":\"left\",\"exit_time\":\"2026-11-02T09:00:00+01:00\",\"aliases\":[\"a@example.com\"]}\n\
            {\"email\":\"ben@example.com\",\"status\":\"leaving\"\n\
            {\"name\":\"No Email\",\"status\":\"left\"}\n\
            [1,2]\n\
            \n\
            {\"email\":\"not-an-address\",\"status\":\"left\"}\n\
            {\"email\":\"chloe@example.com\",\"status\":\"active\",\"type\":\"contractor\"}\n";
        let r = parse_jsonl("roster.jsonl", text.as_bytes(), &Columns::default(), &utc()).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(
            r.entries[0].exit_time.unwrap().to_rfc3339(),
            "2026-11-02T08:00:00+00:00"
        );
        assert_eq!(r.entries[0].aliases, ["a@example.com"]);
        assert_eq!(r.entries[1].kind.as_deref(), Some("contractor"));
        assert_eq!(r.entries[1].line, 7);
        let lines: Vec<usize> = r.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 6]);
        assert_eq!(r.errors[1].to_string(), "roster.jsonl line 3: no email");
        assert!(sniff_jsonl(b"\xEF\xBB\xBF {\"a\":1}"));
        assert!(!sniff_jsonl(b"email,status"));
    }
}
