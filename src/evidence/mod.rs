//! The evidence ledger: an append-only JSON Lines file (`ledger.jsonl` in the
//! data directory), one record per event, each carrying `prev`, the SHA-256
//! (hex) of the previous line's exact bytes without its newline (64 zeros
//! for the first record).
//!
//! Writers: every append takes an exclusive `flock` on `ledger.jsonl.lock`,
//! re-reads whatever other processes appended since (so the chain stays one
//! chain when two processes write), writes its lines with `O_APPEND` and
//! fsyncs them before the append returns. Concurrent async appends share
//! one write and one fsync (a group commit, [`Ledger::commit`]). A lock held for more than [`LOCK_WAIT`] is refused with a
//! clear error.
//!
//! A crash can leave a torn last line (bytes without a final newline). The
//! next append detects it, cuts the file back to the last complete line and
//! writes a `torn_line_set_aside` record that keeps the torn bytes (as text,
//! with their SHA-256 and length), so nothing is silently lost and the chain
//! continues from the last complete record. `verify_chain` reports a torn
//! last line that has not yet been set aside as a problem.
//!
//! A hash chain cannot show that complete records were cut from the end:
//! compare the record count with an earlier `evidence verify` output or a
//! report.

pub mod report;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::connector::RevokeOutcome;
use crate::model::{Account, Grant, GrantKind};

/// The ledger's file name in the data directory.
/// How a note about a broken chain begins (see [`Ledger::startup_notes`]).
pub const BROKEN_CHAIN: &str = "WARNING: the evidence ledger's chain is BROKEN";

pub const LEDGER_FILE: &str = "ledger.jsonl";
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// How long an append waits for another process's lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub operator: String,
    /// The leaver's email (empty for ledger housekeeping records).
    pub case: String,
    #[serde(flatten)]
    pub event: LedgerEvent,
    pub prev: String,
}

impl Record {
    /// The grant key this record is about, if any.
    pub fn key(&self) -> Option<&str> {
        self.event.key()
    }
}

/// A lookup result as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupResult {
    Found,
    NotFound,
    Ambiguous,
    Failed,
}

impl LookupResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Found => "found",
            LookupResult::NotFound => "not_found",
            LookupResult::Ambiguous => "ambiguous",
            LookupResult::Failed => "lookup_failed",
        }
    }
}

/// A kind whose listing failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindFailure {
    pub kind: GrantKind,
    pub error: String,
}

/// One step of a recorded plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub phase: u8,
    pub key: String,
    pub kind: GrantKind,
    pub label: String,
    pub manual: bool,
}

/// What happened. Field names are part of the ledger format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LedgerEvent {
    /// One connector's read of the leaver: the snapshot of their access.
    Discovered {
        connector: String,
        result: LookupResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<Account>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        candidates: Vec<Account>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default)]
        grants: Vec<Grant>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed_kinds: Vec<KindFailure>,
    },
    Planned {
        steps: Vec<PlannedStep>,
    },
    /// Written before the request is sent.
    RevokeRequested {
        key: String,
        phase: u8,
        grant: Grant,
    },
    ApiAnswer {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<RevokeOutcome>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The manual step when the app refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manual: Option<String>,
    },
    /// A fresh, complete read no longer lists the grant.
    Verified {
        key: String,
        how: String,
    },
    /// Past the deadline without a confirming read: `unconfirmed`.
    Escalated {
        key: String,
        reason: String,
    },
    /// A step a person must do.
    ManualRequired {
        key: String,
        grant: Grant,
        instructions: String,
    },
    ManualDone {
        key: String,
        note: String,
        previous_state: String,
    },
    /// A listed grant that had been verified gone is listed again.
    Reappeared {
        key: String,
    },
    /// A fresh complete read (finished at `read_at`) no longer lists a grant
    /// nobody here asked to remove: gone without us (removed by someone
    /// else, or expired).
    Vanished {
        key: String,
        grant: Grant,
        read_at: DateTime<Utc>,
        how: String,
    },
    /// A removal requested before an interruption, with no answer recorded,
    /// that a fresh read still lists: live again, to be requested again.
    StillListed {
        key: String,
        note: String,
    },
    /// The operator picked one of several accounts that match the leaver
    /// in an app (never guessed).
    AccountPicked {
        connector: String,
        account_id: String,
        #[serde(default)]
        candidates: Vec<String>,
    },
    /// A case picked up again from the ledger (after a crash or a new run).
    Resumed {
        pending: Vec<String>,
    },
    Finished {
        summary: crate::engine::Summary,
    },
    /// Team mode: a leaver another host held (a live lease) was taken over
    /// explicitly.
    LeaseTakenOver {
        from: String,
        held_since: DateTime<Utc>,
        by: String,
    },
    /// A torn last line (a crash mid-write) was cut from the file; its
    /// bytes are kept here.
    TornLineSetAside {
        line: usize,
        bytes: usize,
        sha256: String,
        text: String,
    },
}

impl LedgerEvent {
    pub fn name(&self) -> &'static str {
        match self {
            LedgerEvent::Discovered { .. } => "discovered",
            LedgerEvent::Planned { .. } => "planned",
            LedgerEvent::RevokeRequested { .. } => "revoke_requested",
            LedgerEvent::ApiAnswer { .. } => "api_answer",
            LedgerEvent::Verified { .. } => "verified",
            LedgerEvent::Escalated { .. } => "escalated",
            LedgerEvent::ManualRequired { .. } => "manual_required",
            LedgerEvent::ManualDone { .. } => "manual_done",
            LedgerEvent::Reappeared { .. } => "reappeared",
            LedgerEvent::Vanished { .. } => "vanished",
            LedgerEvent::StillListed { .. } => "still_listed",
            LedgerEvent::AccountPicked { .. } => "account_picked",
            LedgerEvent::Resumed { .. } => "resumed",
            LedgerEvent::Finished { .. } => "finished",
            LedgerEvent::LeaseTakenOver { .. } => "lease_taken_over",
            LedgerEvent::TornLineSetAside { .. } => "torn_line_set_aside",
        }
    }

    pub fn key(&self) -> Option<&str> {
        match self {
            LedgerEvent::RevokeRequested { key, .. }
            | LedgerEvent::ApiAnswer { key, .. }
            | LedgerEvent::Verified { key, .. }
            | LedgerEvent::Escalated { key, .. }
            | LedgerEvent::ManualRequired { key, .. }
            | LedgerEvent::ManualDone { key, .. }
            | LedgerEvent::Vanished { key, .. }
            | LedgerEvent::StillListed { key, .. }
            | LedgerEvent::Reappeared { key } => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: String },
    #[error(
        "{path}: another offboard process has held the ledger lock for more than {}s; \
         wait for it to finish or stop it",
        LOCK_WAIT.as_secs()
    )]
    Locked { path: PathBuf },
    /// The shared store (team mode) failed; the message says what and
    /// what happens next.
    #[error("{0}")]
    Store(String),
    #[error("{path}: line {line}: {what}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
    move |e| LedgerError::Io {
        path: path.to_path_buf(),
        error: e.to_string(),
    }
}

/// SHA-256 of some bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A torn last line found and set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub line: usize,
    pub bytes: usize,
    pub sha256: String,
    /// seq of the record that keeps it.
    pub kept_in_seq: u64,
}

struct Head {
    /// File length up to which the head is known.
    len: u64,
    seq: u64,
    hash: String,
    lines: usize,
}

/// Appends waiting for the next group commit, and whether a writer is at
/// work on them.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    writing: bool,
}

struct Job {
    case: String,
    events: Vec<LedgerEvent>,
    done: tokio::sync::oneshot::Sender<Result<Vec<Record>, LedgerError>>,
}

struct Core {
    path: PathBuf,
    lock_path: PathBuf,
    operator: String,
    head: Mutex<Head>,
    torn: Mutex<Vec<TornTail>>,
    queue: Mutex<Queue>,
    /// fsyncs of appended records so far.
    syncs: std::sync::atomic::AtomicU64,
}

/// The append-only ledger. Appends are serialised in-process by a mutex
/// and across processes by `flock`.
///
/// [`Ledger::append`] writes and fsyncs one record. [`Ledger::commit`] is
/// the group commit for async callers: appends that arrive while a write
/// is under way are written together by the next one, in arrival order,
/// with one `fdatasync` for all of them; each caller gets its records only
/// after that fsync, so every record is durable before its step proceeds.
///
/// In team mode the same interface writes to the shared store's ledger
/// table ([`Ledger::shared`]): each commit is one transaction that extends
/// the one chain, and returns once PostgreSQL has committed it.
#[derive(Clone)]
pub struct Ledger {
    core: Arc<Core>,
    shared: Option<Arc<crate::store::PgStore>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.core.path)
            .finish()
    }
}

/// Where the evidence is kept: the ledger file, or the shared store's
/// ledger table. Reading, verifying and reporting work the same on both:
/// a table row holds the exact line the file would.
#[derive(Clone, Debug)]
pub enum Store {
    File(PathBuf),
    Shared(Arc<crate::store::PgStore>),
}

fn store_err(e: crate::store::StoreError) -> LedgerError {
    LedgerError::Store(e.0)
}

impl Store {
    /// The file's path, or `postgres://host:port/db` (no credentials).
    pub fn path(&self) -> PathBuf {
        match self {
            Store::File(p) => p.clone(),
            Store::Shared(s) => PathBuf::from(s.label()),
        }
    }

    /// Whether any evidence can be there (a file that exists; a database).
    pub fn exists(&self) -> bool {
        match self {
            Store::File(p) => p.exists(),
            Store::Shared(_) => true,
        }
    }

    pub fn shared(&self) -> Option<&Arc<crate::store::PgStore>> {
        match self {
            Store::File(_) => None,
            Store::Shared(s) => Some(s),
        }
    }

    /// Opens the ledger for appends by `operator`.
    pub fn open(&self, operator: &str) -> Result<Ledger, LedgerError> {
        match self {
            Store::File(p) => Ledger::open(p, operator),
            Store::Shared(s) => Ok(Ledger::shared(s.clone(), operator)),
        }
    }

    /// Every record, in order.
    pub fn records(&self) -> Result<Vec<Record>, LedgerError> {
        match self {
            Store::File(p) => Ledger::read(p),
            Store::Shared(s) => {
                let s = s.clone();
                let lines = crate::store::pg::block(async move { s.lines(None).await })
                    .map_err(store_err)?;
                parse_lines(&self.path(), &lines)
            }
        }
    }

    /// The records of one case.
    pub fn case_records(&self, email: &str) -> Result<Vec<Record>, LedgerError> {
        let email = email.trim().to_ascii_lowercase();
        match self {
            Store::File(p) => Ledger::read_case(p, &email),
            Store::Shared(s) => {
                let s = s.clone();
                let lines = crate::store::pg::block(async move { s.lines(Some(email)).await })
                    .map_err(store_err)?;
                parse_lines(&self.path(), &lines)
            }
        }
    }

    /// Checks the whole chain (see [`verify_chain`]); on the shared store
    /// the table's lines in `seq` order are checked exactly as a file's.
    pub fn verify(&self) -> Result<ChainReport, LedgerError> {
        match self {
            Store::File(p) => verify_chain(p),
            Store::Shared(s) => {
                let s = s.clone();
                let lines = crate::store::pg::block(async move { s.lines(None).await })
                    .map_err(store_err)?;
                Ok(verify_bytes(&self.path(), &join_lines(&lines)))
            }
        }
    }
}

fn join_lines(lines: &[String]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        bytes.extend_from_slice(l.as_bytes());
        bytes.push(b'\n');
    }
    bytes
}

fn parse_lines(path: &Path, lines: &[String]) -> Result<Vec<Record>, LedgerError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| LedgerError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                what: format!("not a ledger record: {e}"),
            })
        })
        .collect()
}

impl Ledger {
    /// Opens (or creates) the ledger in `data_dir`.
    pub fn open_in(data_dir: &Path, operator: &str) -> Result<Ledger, LedgerError> {
        Self::open(&data_dir.join(LEDGER_FILE), operator)
    }

    /// Opens (or creates) a ledger file. Appends continue its chain; a torn
    /// last line is set aside right away (see the module docs).
    pub fn open(path: &Path, operator: &str) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
        lock_name.push(".lock");
        let core = Core {
            path: path.to_path_buf(),
            lock_path: path.with_file_name(lock_name),
            operator: crate::sanitize::clean(operator),
            head: Mutex::new(Head {
                len: 0,
                seq: 0,
                hash: GENESIS.to_string(),
                lines: 0,
            }),
            torn: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::default()),
            syncs: std::sync::atomic::AtomicU64::new(0),
        };
        {
            let _lock = core.lock()?;
            let mut file = core.file()?;
            let mut head = core.head.lock().expect("ledger head");
            core.catch_up(&mut file, &mut head)?;
        }
        Ok(Ledger {
            core: Arc::new(core),
            shared: None,
        })
    }

    /// The ledger on the shared store (team mode).
    pub fn shared(store: Arc<crate::store::PgStore>, operator: &str) -> Ledger {
        let path = PathBuf::from(store.label());
        let core = Core {
            lock_path: path.clone(),
            path,
            operator: crate::sanitize::clean(operator),
            head: Mutex::new(Head {
                len: 0,
                seq: 0,
                hash: GENESIS.to_string(),
                lines: 0,
            }),
            torn: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::default()),
            syncs: std::sync::atomic::AtomicU64::new(0),
        };
        Ledger {
            core: Arc::new(core),
            shared: Some(store),
        }
    }

    /// The file's path, or `postgres://host:port/db` on the shared store.
    pub fn path(&self) -> &Path {
        &self.core.path
    }

    /// Where this ledger is kept.
    pub fn store(&self) -> Store {
        match &self.shared {
            Some(s) => Store::Shared(s.clone()),
            None => Store::File(self.core.path.clone()),
        }
    }

    /// The records of one case, from wherever the ledger is kept.
    pub fn case_records(&self, email: &str) -> Result<Vec<Record>, LedgerError> {
        self.store().case_records(email)
    }

    pub fn operator(&self) -> &str {
        &self.core.operator
    }

    /// Torn lines this handle set aside (for a warning to the operator).
    pub fn torn_tails(&self) -> Vec<TornTail> {
        self.core.torn.lock().expect("ledger torn").clone()
    }

    /// What the operator must be told when a command or the console opens
    /// this ledger: torn last lines set aside, and loudly, a broken chain
    /// (edited, deleted, inserted or reordered records). Work goes on
    /// either way: an urgent termination is never blocked by the evidence
    /// of an earlier one.
    pub fn startup_notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .torn_tails()
            .into_iter()
            .map(|t| {
                format!(
                    "ledger line {} was incomplete ({} bytes, a crash while writing); kept in record {} and cut from the file",
                    t.line, t.bytes, t.kept_in_seq
                )
            })
            .collect();
        match self.store().verify() {
            Ok(report) if report.ok() => {}
            Ok(report) => {
                let first = report
                    .problems
                    .first()
                    .map(|p| {
                        format!(
                            " (line {}: {})",
                            p.line,
                            crate::sanitize::clean_max(&p.what, 160)
                        )
                    })
                    .unwrap_or_default();
                notes.push(format!(
                    "{BROKEN_CHAIN}: {} problem(s){first} in {}; records were edited, deleted, inserted or reordered. offboard keeps working and keeps recording, but this evidence cannot be trusted as it is: run `offboard evidence verify` and keep a copy for the investigation",
                    report.problems.len(),
                    self.path().display()
                ));
            }
            Err(e) => notes.push(format!(
                "WARNING: the evidence ledger's chain could not be checked: {e}"
            )),
        }
        notes
    }

    /// The last record's `seq` (the number of records in an intact ledger).
    pub fn last_seq(&self) -> u64 {
        if let Some(s) = &self.shared {
            let s = s.clone();
            return crate::store::pg::block(async move { s.count().await }).unwrap_or(0);
        }
        self.core.head.lock().expect("ledger head").seq
    }

    /// How many fsyncs this handle's appends made (group commits make
    /// fewer than records).
    pub fn fsyncs(&self) -> u64 {
        self.core.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends one record for `case` and fsyncs it.
    pub fn append(&self, case: &str, event: LedgerEvent) -> Result<Record, LedgerError> {
        if let Some(s) = &self.shared {
            let (s, op, case) = (s.clone(), self.core.operator.clone(), case.to_string());
            let mut records =
                crate::store::pg::block(
                    async move { s.append(&op, vec![(case, vec![event])]).await },
                )
                .map_err(store_err)?;
            return Ok(records.remove(0));
        }
        let mut records = self.core.write_batch(&[(case, vec![event])])?;
        Ok(records.remove(0))
    }

    /// Appends `events` for `case`, in order and next to each other, through
    /// the group commit. Returns once they are written and fsynced (an
    /// error means none of this call's records may be taken as durable).
    /// Needs a Tokio runtime: the write runs on its blocking pool.
    pub async fn commit(
        &self,
        case: &str,
        events: Vec<LedgerEvent>,
    ) -> Result<Vec<Record>, LedgerError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(s) = &self.shared {
            let (s, op, case) = (s.clone(), self.core.operator.clone(), case.to_string());
            return crate::store::pg::spawn(
                async move { s.append(&op, vec![(case, events)]).await },
            )
            .await
            .map_err(store_err);
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        let start_writer = {
            let mut q = self.core.queue.lock().expect("ledger queue");
            q.jobs.push(Job {
                case: case.to_string(),
                events,
                done,
            });
            !std::mem::replace(&mut q.writing, true)
        };
        if start_writer {
            let core = self.core.clone();
            tokio::task::spawn_blocking(move || core.drain());
        }
        answer.await.unwrap_or_else(|_| {
            Err(LedgerError::Io {
                path: self.core.path.clone(),
                error: "the ledger writer stopped before confirming the write".into(),
            })
        })
    }

    /// Every complete record of a ledger file, in order. A line that is not
    /// a record is an error naming its line; a torn last line is skipped
    /// (it is reported by [`verify_chain`] and set aside by the next append).
    pub fn read(path: &Path) -> Result<Vec<Record>, LedgerError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(path)(e)),
        };
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut out = Vec::new();
        for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let r: Record = serde_json::from_slice(line).map_err(|e| LedgerError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                what: format!("not a ledger record: {e}"),
            })?;
            out.push(r);
        }
        Ok(out)
    }

    /// The records of one case.
    pub fn read_case(path: &Path, email: &str) -> Result<Vec<Record>, LedgerError> {
        let email = email.trim().to_ascii_lowercase();
        Ok(Self::read(path)?
            .into_iter()
            .filter(|r| r.case == email)
            .collect())
    }
}

impl Core {
    fn file(&self) -> Result<File, LedgerError> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io_err(&self.path))
    }

    fn lock(&self) -> Result<FileLock, LedgerError> {
        FileLock::acquire(&self.lock_path)
    }

    /// The group-commit writer: writes whatever is queued, one batch per
    /// fsync, until the queue is empty.
    fn drain(&self) {
        // Should a write panic, the next commit starts a new writer rather
        // than waiting for this one forever.
        struct Done<'a>(&'a Mutex<Queue>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                if std::thread::panicking()
                    && let Ok(mut q) = self.0.lock()
                {
                    q.writing = false;
                }
            }
        }
        let _done = Done(&self.queue);
        loop {
            let jobs = {
                let mut q = self.queue.lock().expect("ledger queue");
                if q.jobs.is_empty() {
                    q.writing = false;
                    return;
                }
                std::mem::take(&mut q.jobs)
            };
            let batch: Vec<(&str, Vec<LedgerEvent>)> = jobs
                .iter()
                .map(|j| (j.case.as_str(), j.events.clone()))
                .collect();
            match self.write_batch(&batch) {
                Ok(mut records) => {
                    for j in jobs {
                        let rest = records.split_off(j.events.len());
                        let _ = j.done.send(Ok(std::mem::replace(&mut records, rest)));
                    }
                }
                Err(e) => {
                    for j in jobs {
                        let _ = j.done.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Writes every event of `batch`, in order, as one `write` and one
    /// `fdatasync`, under the head mutex and the cross-process lock.
    fn write_batch(&self, batch: &[(&str, Vec<LedgerEvent>)]) -> Result<Vec<Record>, LedgerError> {
        let mut head = self.head.lock().expect("ledger head");
        let _lock = self.lock()?;
        let mut file = self.file()?;
        self.catch_up(&mut file, &mut head)?;
        let mut next = Head {
            len: head.len,
            seq: head.seq,
            hash: head.hash.clone(),
            lines: head.lines,
        };
        let mut bytes = Vec::new();
        let mut records = Vec::new();
        for (case, events) in batch {
            for event in events {
                let record = self.record(&next, case, event.clone());
                let line = self.encode(&record)?;
                next.hash = sha256_hex(&line);
                next.seq = record.seq;
                next.lines += 1;
                next.len += line.len() as u64 + 1;
                bytes.extend_from_slice(&line);
                bytes.push(b'\n');
                records.push(record);
            }
        }
        file.write_all(&bytes).map_err(io_err(&self.path))?;
        file.sync_data().map_err(io_err(&self.path))?;
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *head = next;
        Ok(records)
    }

    fn record(&self, head: &Head, case: &str, event: LedgerEvent) -> Record {
        Record {
            seq: head.seq + 1,
            ts: Utc::now(),
            operator: self.operator.clone(),
            case: case.to_string(),
            event,
            prev: head.hash.clone(),
        }
    }

    fn encode(&self, record: &Record) -> Result<Vec<u8>, LedgerError> {
        serde_json::to_vec(record).map_err(|e| LedgerError::Io {
            path: self.path.clone(),
            error: format!("cannot encode a record: {e}"),
        })
    }

    /// Reads whatever was appended since `head.len` (by another process or
    /// before this handle was opened) and sets aside a torn last line.
    fn catch_up(&self, file: &mut File, head: &mut Head) -> Result<(), LedgerError> {
        let len = file.metadata().map_err(io_err(&self.path))?.len();
        if len < head.len {
            return Err(LedgerError::Corrupt {
                path: self.path.clone(),
                line: head.lines,
                what: format!(
                    "the file shrank from {} to {len} bytes: it was cut or replaced",
                    head.len
                ),
            });
        }
        if len == head.len {
            return Ok(());
        }
        file.seek(SeekFrom::Start(head.len))
            .map_err(io_err(&self.path))?;
        let mut buf = Vec::with_capacity((len - head.len) as usize);
        file.read_to_end(&mut buf).map_err(io_err(&self.path))?;
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..complete].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            head.lines += 1;
            let v: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| LedgerError::Corrupt {
                    path: self.path.clone(),
                    line: head.lines,
                    what: format!("not a JSON record ({e}); run `offboard evidence verify`"),
                })?;
            head.seq =
                v.get("seq")
                    .and_then(|s| s.as_u64())
                    .ok_or_else(|| LedgerError::Corrupt {
                        path: self.path.clone(),
                        line: head.lines,
                        what: "no `seq`; run `offboard evidence verify`".into(),
                    })?;
            head.hash = sha256_hex(line);
        }
        head.len += complete as u64;
        if complete < buf.len() {
            let torn = &buf[complete..];
            let line = head.lines + 1;
            file.set_len(head.len).map_err(io_err(&self.path))?;
            file.sync_all().map_err(io_err(&self.path))?;
            let tail = TornTail {
                line,
                bytes: torn.len(),
                sha256: sha256_hex(torn),
                kept_in_seq: head.seq + 1,
            };
            tracing::warn!(line, bytes = torn.len(), "ledger: torn last line set aside");
            self.write_locked(
                file,
                head,
                "",
                LedgerEvent::TornLineSetAside {
                    line,
                    bytes: torn.len(),
                    sha256: tail.sha256.clone(),
                    text: String::from_utf8_lossy(torn).into_owned(),
                },
            )?;
            self.torn.lock().expect("ledger torn").push(tail);
        }
        Ok(())
    }

    fn write_locked(
        &self,
        file: &mut File,
        head: &mut Head,
        case: &str,
        event: LedgerEvent,
    ) -> Result<Record, LedgerError> {
        let record = Record {
            seq: head.seq + 1,
            ts: Utc::now(),
            operator: self.operator.clone(),
            case: case.to_string(),
            event,
            prev: head.hash.clone(),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| LedgerError::Io {
            path: self.path.clone(),
            error: format!("cannot encode a record: {e}"),
        })?;
        let hash = sha256_hex(&line);
        line.push(b'\n');
        file.write_all(&line).map_err(io_err(&self.path))?;
        file.sync_data().map_err(io_err(&self.path))?;
        head.len += line.len() as u64;
        head.seq = record.seq;
        head.hash = hash;
        head.lines += 1;
        Ok(record)
    }
}

/// An exclusive advisory lock on a file, released on drop (and by the
/// kernel when the process dies, so a crash never leaves a stale lock).
struct FileLock {
    _file: File,
}

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock, LedgerError> {
        use std::os::unix::io::AsRawFd;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock on a file descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io_err(path)(err));
            }
            if std::time::Instant::now() > deadline {
                return Err(LedgerError::Locked {
                    path: path.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    pub what: String,
}

/// The result of checking a ledger's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub path: PathBuf,
    /// Complete lines read.
    pub records: usize,
    pub problems: Vec<Problem>,
    /// Torn lines that were set aside by a later append (not problems).
    pub set_aside: usize,
    /// SHA-256 of the last complete line: the chain's head. Kept outside
    /// the ledger (in a ticket, with a report) it shows later whether the
    /// last record was edited or whole records were cut from the end, which
    /// the chain alone cannot.
    pub head: String,
}

impl ChainReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every line: it parses, its `seq` follows the previous one, its
/// `prev` is the SHA-256 of the previous line's bytes; and the file ends
/// with a complete line. An edited line breaks the next line's `prev` (and
/// usually its own parse); a deleted, inserted or reordered line breaks
/// `seq` and `prev`.
pub fn verify_chain(path: &Path) -> Result<ChainReport, LedgerError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(path)(e)),
    };
    Ok(verify_bytes(path, &bytes))
}

fn verify_bytes(path: &Path, bytes: &[u8]) -> ChainReport {
    let mut problems = Vec::new();
    let mut prev_hash = GENESIS.to_string();
    let mut prev_seq = 0u64;
    let mut records = 0usize;
    let mut set_aside = 0usize;
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // `split` yields a last empty piece when the file ends with a newline.
    let torn = match lines.last() {
        Some(&[]) => {
            lines.pop();
            None
        }
        Some(_) => lines.pop(),
        None => None,
    };
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        records += 1;
        let hash = sha256_hex(line);
        let v: Result<serde_json::Value, _> = serde_json::from_slice(line);
        match v {
            Err(e) => problems.push(Problem {
                line: n,
                what: if line.is_empty() {
                    "empty line (inserted or a line was cut)".into()
                } else {
                    format!("not valid JSON: {e}")
                },
            }),
            Ok(v) => {
                let seq = v.get("seq").and_then(|s| s.as_u64());
                let prev = v.get("prev").and_then(|s| s.as_str());
                match seq {
                    None => problems.push(Problem {
                        line: n,
                        what: "no `seq` field".into(),
                    }),
                    Some(s) if s != prev_seq + 1 => problems.push(Problem {
                        line: n,
                        what: format!(
                            "seq {s} where {} was expected (a line was deleted, inserted or moved)",
                            prev_seq + 1
                        ),
                    }),
                    Some(_) => {}
                }
                match prev {
                    None => problems.push(Problem {
                        line: n,
                        what: "no `prev` field".into(),
                    }),
                    Some(p) if p != prev_hash => problems.push(Problem {
                        line: n,
                        what: if n == 1 {
                            "`prev` of the first line is not the genesis value (lines were cut from the start?)".into()
                        } else {
                            format!(
                                "`prev` does not match the SHA-256 of line {} (line {} was edited, or lines were deleted, inserted or moved)",
                                n - 1,
                                n - 1
                            )
                        },
                    }),
                    Some(_) => {}
                }
                if serde_json::from_value::<Record>(v.clone()).is_err() {
                    problems.push(Problem {
                        line: n,
                        what: "not a ledger record (fields missing or of the wrong type)".into(),
                    });
                }
                if v.get("event").and_then(|e| e.as_str()) == Some("torn_line_set_aside") {
                    set_aside += 1;
                }
                if let Some(s) = seq {
                    prev_seq = s;
                }
            }
        }
        prev_hash = hash;
    }
    if let Some(t) = torn {
        problems.push(Problem {
            line: lines.len() + 1,
            what: format!(
                "incomplete last line ({} bytes, no newline): a crash while writing, or a cut; \
                 the next run sets it aside in a `torn_line_set_aside` record",
                t.len()
            ),
        });
    }
    ChainReport {
        path: path.to_path_buf(),
        records,
        problems,
        set_aside,
        head: prev_hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Revocation, Risk};

    fn grant(id: &str) -> Grant {
        Grant {
            connector: "google".into(),
            id: id.into(),
            kind: GrantKind::OauthGrant,
            label: format!("App {id}"),
            details: String::new(),
            risk: Risk::High,
            revocation: Revocation::Api,
            since: None,
            phase: None,
            after: Vec::new(),
        }
    }

    fn write_some(path: &Path, n: usize) -> Ledger {
        let l = Ledger::open(path, "op@example.com").unwrap();
        for i in 0..n {
            l.append(
                "dana@example.com",
                LedgerEvent::RevokeRequested {
                    key: format!("google/t{i}"),
                    phase: 1,
                    grant: grant(&format!("t{i}")),
                },
            )
            .unwrap();
        }
        l
    }

    #[test]
    fn chain_links_and_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        drop(write_some(&p, 3));
        let l = Ledger::open(&p, "other").unwrap();
        assert_eq!(l.last_seq(), 3);
        l.append(
            "dana@example.com",
            LedgerEvent::Verified {
                key: "google/t0".into(),
                how: "absent".into(),
            },
        )
        .unwrap();
        let recs = Ledger::read(&p).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].prev, GENESIS);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for i in 1..4 {
            assert_eq!(recs[i].prev, sha256_hex(lines[i - 1].as_bytes()));
            assert_eq!(recs[i].seq, i as u64 + 1);
        }
        let rep = verify_chain(&p).unwrap();
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!(rep.records, 4);
    }

    #[test]
    fn two_handles_interleave_into_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let a = Ledger::open(&p, "a").unwrap();
        let b = Ledger::open(&p, "b").unwrap();
        for i in 0..5 {
            let l = if i % 2 == 0 { &a } else { &b };
            l.append(
                "x@example.com",
                LedgerEvent::Reappeared {
                    key: format!("k{i}"),
                },
            )
            .unwrap();
        }
        let rep = verify_chain(&p).unwrap();
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!(rep.records, 5);
    }

    #[test]
    fn torn_tail_is_reported_then_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        drop(write_some(&p, 2));
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":3,\"ts\":\"2025").unwrap();
        drop(f);
        let rep = verify_chain(&p).unwrap();
        assert_eq!(rep.problems.len(), 1);
        assert_eq!(rep.problems[0].line, 3);
        assert!(rep.problems[0].what.contains("incomplete last line"));
        // Reading skips it; opening sets it aside.
        assert_eq!(Ledger::read(&p).unwrap().len(), 2);
        let l = Ledger::open(&p, "op").unwrap();
        let torn = l.torn_tails();
        assert_eq!(torn.len(), 1);
        assert_eq!(torn[0].line, 3);
        let recs = Ledger::read(&p).unwrap();
        assert_eq!(recs.len(), 3);
        match &recs[2].event {
            LedgerEvent::TornLineSetAside { text, bytes, .. } => {
                assert_eq!(text, "{\"seq\":3,\"ts\":\"2025");
                assert_eq!(*bytes, 19);
            }
            e => panic!("{e:?}"),
        }
        let rep = verify_chain(&p).unwrap();
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!(rep.set_aside, 1);
    }

    #[test]
    fn records_round_trip_with_flattened_events() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let l = Ledger::open(&p, "op").unwrap();
        let ev = LedgerEvent::ApiAnswer {
            key: "google/t1".into(),
            outcome: Some(RevokeOutcome::AlreadyGone),
            error: None,
            manual: None,
        };
        l.append("dana@example.com", ev.clone()).unwrap();
        let line = std::fs::read_to_string(&p).unwrap();
        assert!(line.starts_with("{\"seq\":1,\"ts\":"), "{line}");
        assert!(line.contains("\"event\":\"api_answer\""));
        assert!(line.contains("\"outcome\":\"already_gone\""));
        let recs = Ledger::read(&p).unwrap();
        assert_eq!(recs[0].event, ev);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_fsyncs_and_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let l = Ledger::open(&p, "op").unwrap();
        l.append(
            "dana@example.com",
            LedgerEvent::Reappeared { key: "k".into() },
        )
        .unwrap();
        let before = l.fsyncs();
        let jobs = (0..200).map(|i| {
            let l = l.clone();
            async move {
                let recs = l
                    .commit(
                        "dana@example.com",
                        vec![
                            LedgerEvent::RevokeRequested {
                                key: format!("google/t{i}"),
                                phase: 1,
                                grant: grant(&format!("t{i}")),
                            },
                            LedgerEvent::Verified {
                                key: format!("google/t{i}"),
                                how: "absent".into(),
                            },
                        ],
                    )
                    .await
                    .unwrap();
                // Written before the call returned.
                let on_disk = Ledger::read(l.path()).unwrap();
                for r in &recs {
                    assert_eq!(on_disk[(r.seq - 1) as usize], *r);
                }
                recs
            }
        });
        let all = futures::future::join_all(jobs).await;
        let mut seqs: Vec<u64> = Vec::new();
        for recs in &all {
            assert_eq!(recs.len(), 2);
            assert_eq!(
                recs[1].seq,
                recs[0].seq + 1,
                "one call's records stay together"
            );
            assert_eq!(recs[0].key(), recs[1].key());
            seqs.extend(recs.iter().map(|r| r.seq));
        }
        seqs.sort();
        assert_eq!(seqs, (2..=401).collect::<Vec<u64>>());
        let rep = verify_chain(&p).unwrap();
        assert!(rep.ok(), "{:?}", rep.problems);
        assert_eq!(rep.records, 401);
        let syncs = l.fsyncs() - before;
        assert!(
            (1..100).contains(&syncs),
            "{syncs} fsyncs for 200 concurrent commits"
        );
        // A plain append continues the same chain.
        l.append("x", LedgerEvent::Reappeared { key: "k2".into() })
            .unwrap();
        assert_eq!(l.last_seq(), 402);
        assert!(verify_chain(&p).unwrap().ok());
    }

    #[tokio::test]
    async fn a_failed_group_write_fails_every_caller() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let l = write_some(&p, 2);
        let text = std::fs::read_to_string(&p).unwrap();
        let first = text.lines().next().unwrap();
        std::fs::write(&p, format!("{first}\n")).unwrap();
        let (a, b) = tokio::join!(
            l.commit("x", vec![LedgerEvent::Reappeared { key: "a".into() }]),
            l.commit("x", vec![LedgerEvent::Reappeared { key: "b".into() }]),
        );
        for r in [a, b] {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("shrank"), "{e}");
        }
        assert_eq!(Ledger::read(&p).unwrap().len(), 1);
    }

    #[test]
    fn a_shrunk_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let l = write_some(&p, 2);
        let text = std::fs::read_to_string(&p).unwrap();
        let first = text.lines().next().unwrap();
        std::fs::write(&p, format!("{first}\n")).unwrap();
        let err = l
            .append("x", LedgerEvent::Reappeared { key: "k".into() })
            .unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
    }
}
