//! The console's state. Only [`super::update::update`] changes it; views
//! read it. Every text from an API is sanitised before it is stored here.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::connector::HealthState;
use crate::model::{Grant, GrantKind, GrantState, Phase};

use super::theme::{Theme, ThemeSet};

/// Most activity lines kept.
pub const ACTIVITY_CAP: usize = 2000;
/// Never refresh a connector more often than this.
pub const MIN_REFRESH: Duration = Duration::from_secs(2);
/// Never wait longer than this between refreshes, however slow the API asks.
pub const MAX_REFRESH: Duration = Duration::from_secs(120);

/// One grant of a leaver with the engine's state for it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRow {
    /// `connector/id`.
    pub key: String,
    pub grant: Grant,
    pub state: GrantState,
    /// When the grant entered its current state.
    pub since_state: Option<DateTime<Utc>>,
    /// The API's last answer to a revoke request.
    pub answer: Option<String>,
}

/// A leaver's account in one app.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountStatus {
    Pending,
    Found {
        login: String,
        display_name: String,
        active: bool,
    },
    NotFound,
    /// Several accounts match: the operator picks (the tool never guesses).
    Ambiguous {
        candidates: Vec<Candidate>,
    },
    Failed {
        error: String,
    },
}

impl AccountStatus {
    pub fn label(&self) -> String {
        match self {
            AccountStatus::Pending => "looking up".into(),
            AccountStatus::Found { active: true, .. } => "active".into(),
            AccountStatus::Found { active: false, .. } => "suspended".into(),
            AccountStatus::NotFound => "no account".into(),
            AccountStatus::Ambiguous { candidates } => format!("{} matches", candidates.len()),
            AccountStatus::Failed { .. } => "lookup failed".into(),
        }
    }
}

/// One of several accounts that match a leaver in an app (sanitised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The app's id for the account.
    pub id: String,
    pub login: String,
    pub display_name: String,
    pub active: bool,
    pub last_login: Option<String>,
}

impl Candidate {
    pub fn from_account(a: &crate::model::Account) -> Candidate {
        use crate::sanitize::clean;
        Candidate {
            id: clean(&a.id),
            login: clean(&a.login),
            display_name: clean(&a.display_name),
            active: a.active,
            last_login: a.last_login.as_deref().map(clean),
        }
    }
}

/// A snapshot of one leaver's case, as the engine reports it (sanitised).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CaseSnapshot {
    pub email: String,
    pub display_name: Option<String>,
    pub accounts: Vec<(String, AccountStatus)>,
    pub grants: Vec<GrantRow>,
}

/// Where a leaver stands, as the queue shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaverStatus {
    Queued,
    Discovering,
    DiscoveryFailed,
    /// Live grants, and apps whose lookup failed or matched several accounts
    /// (what is live there is unknown until the operator acts).
    Live(usize, usize),
    Revoking,
    AllVerified,
    NeedsAttention(usize),
    NothingFound,
    /// No app knows the address (a typo, or a lookalike character): never
    /// "all clear".
    NotFoundAnywhere,
}

impl LeaverStatus {
    pub fn label(&self) -> String {
        match self {
            LeaverStatus::Queued => "queued".into(),
            LeaverStatus::Discovering => "discovering".into(),
            LeaverStatus::DiscoveryFailed => "discovery failed".into(),
            LeaverStatus::Live(n, 0) => format!("{n} live"),
            LeaverStatus::Live(n, unknown) => format!("{n} live, {unknown} app unknown"),
            LeaverStatus::Revoking => "revoking".into(),
            LeaverStatus::AllVerified => "all verified".into(),
            LeaverStatus::NeedsAttention(_) => "needs attention".into(),
            LeaverStatus::NothingFound => "no access found".into(),
            LeaverStatus::NotFoundAnywhere => crate::engine::NOT_FOUND_ANYWHERE.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaverRow {
    pub email: String,
    pub name: Option<String>,
    pub exit_at: Option<DateTime<Utc>>,
    pub discovering: bool,
    pub discovered: bool,
    /// The last discovery failed (not retried until asked: `v`).
    pub discovery_error: Option<String>,
    /// When the grants shown were last read from the apps.
    pub as_of: Option<DateTime<Utc>>,
    pub revoking: bool,
    pub accounts: BTreeMap<String, AccountStatus>,
    pub grants: Vec<GrantRow>,
    /// Revoke-all progress per phase: (done, total).
    pub progress: BTreeMap<Phase, (usize, usize)>,
    /// Steps of a revoke the ledger holds as interrupted (the console was
    /// quit or killed while it ran): resumed once the leaver is read.
    pub resume: Vec<String>,
    /// Team mode: the host that holds the leaver (another operator's
    /// lease), and since when.
    pub holder: Option<(String, DateTime<Utc>)>,
    /// Whom the leaver's data goes to in a hand-over (the roster's manager,
    /// or `:handover EMAIL`).
    pub manager: Option<String>,
}

impl LeaverRow {
    pub fn new(email: &str) -> Self {
        LeaverRow {
            email: crate::sanitize::clean(email.trim()).to_ascii_lowercase(),
            name: None,
            exit_at: None,
            discovering: false,
            discovered: false,
            discovery_error: None,
            as_of: None,
            revoking: false,
            accounts: BTreeMap::new(),
            grants: Vec::new(),
            progress: BTreeMap::new(),
            resume: Vec::new(),
            holder: None,
            manager: None,
        }
    }

    pub fn status(&self) -> LeaverStatus {
        if self.discovering && !self.discovered {
            return LeaverStatus::Discovering;
        }
        if !self.discovered && self.discovery_error.is_some() {
            return LeaverStatus::DiscoveryFailed;
        }
        if !self.discovered {
            return LeaverStatus::Queued;
        }
        if self.revoking || self.grants.iter().any(|g| g.state.is_removing()) {
            return LeaverStatus::Revoking;
        }
        let attention = self
            .grants
            .iter()
            .filter(|g| g.state.needs_attention())
            .count()
            + self
                .accounts
                .values()
                .filter(|a| {
                    matches!(
                        a,
                        AccountStatus::Failed { .. } | AccountStatus::Ambiguous { .. }
                    )
                })
                .count();
        let live = self
            .grants
            .iter()
            .filter(|g| g.state == GrantState::Live)
            .count();
        let unread = self
            .accounts
            .values()
            .filter(|a| {
                matches!(
                    a,
                    AccountStatus::Failed { .. } | AccountStatus::Ambiguous { .. }
                )
            })
            .count();
        if live > 0 {
            return LeaverStatus::Live(live, unread);
        }
        if attention > 0 {
            return LeaverStatus::NeedsAttention(attention);
        }
        if self.grants.is_empty() {
            let found = self.accounts.values().any(|a| {
                matches!(
                    a,
                    AccountStatus::Found { .. } | AccountStatus::Ambiguous { .. }
                )
            });
            if !found
                && self
                    .accounts
                    .values()
                    .any(|a| *a == AccountStatus::NotFound)
            {
                return LeaverStatus::NotFoundAnywhere;
            }
            return LeaverStatus::NothingFound;
        }
        LeaverStatus::AllVerified
    }

    pub fn grant(&self, key: &str) -> Option<&GrantRow> {
        self.grants.iter().find(|g| g.key == key)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRow {
    pub id: String,
    pub name: String,
    pub health: HealthState,
    pub health_detail: Option<String>,
    pub last_refresh: Option<DateTime<Utc>>,
    pub interval: Duration,
    /// Extra slowdown after rate limits or failed reads (a power of two).
    pub backoff: u32,
    pub next_due: Option<DateTime<Utc>>,
    pub in_flight: bool,
    /// A refresh asked for while one was in flight: runs when it ends.
    pub pending: bool,
}

impl ConnectorRow {
    pub fn new(id: &str, name: &str, interval: Duration) -> Self {
        ConnectorRow {
            id: crate::sanitize::clean(id),
            name: crate::sanitize::clean(name),
            health: HealthState::Unknown,
            health_detail: None,
            last_refresh: None,
            interval: interval.max(MIN_REFRESH),
            backoff: 0,
            next_due: None,
            in_flight: false,
            pending: false,
        }
    }

    /// The wait before the next automatic refresh.
    pub fn effective_interval(&self) -> Duration {
        let base = self.interval.max(MIN_REFRESH);
        let factor = 1u32 << self.backoff.min(6);
        (base * factor).min(MAX_REFRESH)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Queue,
    Matrix,
    Grants,
    Activity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Overview,
    /// One app's grants for the selected leaver (connector id).
    Drill(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Command(String),
    Filter(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    /// Revoke some grants. Focus starts on Cancel.
    Confirm {
        email: String,
        scope: RevokeScope,
        count: usize,
        labels: Vec<String>,
        retry: bool,
        yes_focused: bool,
    },
    /// Revoke everything: the operator types the leaver's email.
    RevokeAll {
        email: String,
        typed: String,
        count: usize,
    },
    /// Tick off a manual step with a note for the ledger.
    ManualNote {
        email: String,
        key: String,
        label: String,
        instructions: String,
        note: String,
    },
    /// `:login APP`: the sign-in in progress.
    Login {
        app: String,
        /// None until the authorization server answered.
        prompt: Option<LoginPrompt>,
        /// The redirected URL typed or pasted back (authorization code).
        pasted: String,
        /// The pasted URL was sent; waiting for the token exchange.
        submitted: bool,
        error: Option<String>,
    },
    /// Details of one grant (Enter on a grant that is not a manual step),
    /// scrolled down by `scroll` lines.
    GrantDetail {
        key: String,
        scroll: u16,
    },
    /// `q` while work is in flight. Focus starts on Stay.
    Quit {
        quit_focused: bool,
    },
    /// Something the operator must be able to read whole (the path of an
    /// exported report).
    Notice {
        title: String,
        text: Vec<String>,
        scroll: u16,
    },
    /// The accounts that match a leaver in one app.
    Accounts {
        email: String,
        app: String,
        candidates: Vec<Candidate>,
        selected: usize,
    },
    Help {
        scroll: u16,
    },
    /// Revoke the picked leavers as one batch: the dry run's totals, the
    /// cap's reasons, and the exact number of leavers typed to go ahead.
    Batch {
        emails: Vec<String>,
        /// None while the leavers are discovered and planned.
        plan: Option<BatchPlan>,
        typed: String,
        error: Option<String>,
    },
}

/// What a batch would do (its dry run), as the console shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchPlan {
    /// Steps per app and kind.
    pub totals: Vec<(String, String, usize)>,
    /// Removals to request per app.
    pub requests: BTreeMap<String, usize>,
    /// Why the batch is over the cap (empty: it is not).
    pub reasons: Vec<String>,
    /// Each app's quota, requests a second.
    pub quotas: BTreeMap<String, f64>,
}

// The quotas are finite rates: comparing them is an equivalence.
impl Eq for BatchPlan {}

/// A batch running (or finished) in the console.
#[derive(Debug, Clone)]
pub struct BatchView {
    pub emails: Vec<String>,
    pub progress: crate::fleet::batch::Progress,
    pub running: bool,
    /// Why the circuit breaker paused it, and who was not started.
    pub paused: Option<String>,
    pub not_started: Vec<String>,
}

/// What the operator needs to approve a sign-in. Holds no secret: the user
/// code and URLs are meant to be shown (PKCE sends only the challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPrompt {
    Device {
        user_code: String,
        verification_uri: String,
        verification_uri_complete: Option<String>,
        expires_at: DateTime<Utc>,
    },
    Code {
        url: String,
        redirect_uri: String,
        browser_opened: bool,
    },
}

/// Which grants a revoke covers (empty: all of the leaver's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevokeScope {
    pub apps: Vec<String>,
    pub kinds: Vec<GrantKind>,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Good,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivityLine {
    pub at: DateTime<Utc>,
    pub level: Level,
    pub text: String,
}

/// Symbols, so that ASCII terminals get ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbols {
    pub ascii: bool,
}

impl Symbols {
    pub fn mark(&self) -> &'static str {
        if self.ascii { "*" } else { "●" }
    }
    pub fn pointer(&self) -> &'static str {
        if self.ascii { ">" } else { "▶" }
    }
    pub fn up(&self) -> &'static str {
        if self.ascii { "^" } else { "↑" }
    }
    pub fn down(&self) -> &'static str {
        if self.ascii { "v" } else { "↓" }
    }
    pub fn dot(&self) -> &'static str {
        if self.ascii { "-" } else { "·" }
    }
    pub fn spinner(&self, n: usize) -> &'static str {
        const U: [&str; 8] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧"];
        const A: [&str; 4] = ["|", "/", "-", "\\"];
        if self.ascii {
            A[n % A.len()]
        } else {
            U[n % U.len()]
        }
    }
    pub fn bar(&self) -> (&'static str, &'static str) {
        if self.ascii {
            ("#", "-")
        } else {
            ("█", "░")
        }
    }
    pub fn ellipsis(&self) -> &'static str {
        if self.ascii { "..." } else { "…" }
    }
    /// One column wide, for cutting text to fit.
    pub fn ellipsis_short(&self) -> &'static str {
        if self.ascii { "~" } else { "…" }
    }
}

pub struct Model {
    pub operator: String,
    pub read_only: bool,
    pub symbols: Symbols,
    pub themes: ThemeSet,
    pub theme: Theme,
    pub now: DateTime<Utc>,
    pub spinner: usize,
    pub connectors: Vec<ConnectorRow>,
    pub leavers: Vec<LeaverRow>,
    pub screen: Screen,
    pub focus: Focus,
    pub queue_sel: usize,
    pub matrix_sel: usize,
    pub grant_sel: usize,
    pub filter_queue: String,
    pub filter_apps: String,
    pub filter_grants: String,
    /// Indices into the selected leaver's grants shown by the drill-down
    /// (app and filter applied). Kept by `update`.
    pub grant_view: Vec<usize>,
    pub marks: BTreeSet<String>,
    pub input: Option<Input>,
    pub dialog: Option<Dialog>,
    pub message: Option<(Level, String)>,
    pub activity: VecDeque<ActivityLine>,
    /// Lines scrolled back from the newest in the activity pane.
    pub activity_back: usize,
    pub quit: bool,
    /// Whether the next frame differs from the last drawn one.
    pub dirty: bool,
    /// How many leavers are discovered at once in the background.
    pub background_discoveries: usize,
    /// Scroll memory of the virtualised grant table (set while drawing).
    pub grant_offset: Cell<usize>,
    /// Last drawn size (for layout choices made in `update`).
    pub size: (u16, u16),
    /// How far the open scrolling popup can scroll (set while drawing).
    pub popup_max_scroll: Cell<u16>,
    pub data_dir_hint: Option<String>,
    /// The evidence ledger's chain was found broken at start: the header
    /// says so for as long as the console runs (work goes on).
    pub ledger_broken: bool,
    /// `:auto on`: the exit-time policy (`run --due`) runs while the
    /// console is open. Off by default.
    pub auto: bool,
    /// A policy run is under way.
    pub auto_running: bool,
    /// When the policy runs next.
    pub auto_next: Option<DateTime<Utc>>,
    /// Leavers picked (`Space` in the queue) for a batch (`B`).
    pub picked: BTreeSet<String>,
    /// The batch under way or last run (its progress).
    pub batch: Option<BatchView>,
}

impl Model {
    pub fn new(
        operator: &str,
        read_only: bool,
        ascii: bool,
        themes: ThemeSet,
        theme: &str,
    ) -> (Model, Option<String>) {
        let (theme, msg) = themes.get(theme);
        let model = Model {
            operator: crate::sanitize::clean(operator),
            read_only,
            symbols: Symbols { ascii },
            themes,
            theme,
            now: Utc::now(),
            spinner: 0,
            connectors: Vec::new(),
            leavers: Vec::new(),
            screen: Screen::Overview,
            focus: Focus::Queue,
            queue_sel: 0,
            matrix_sel: 0,
            grant_sel: 0,
            filter_queue: String::new(),
            filter_apps: String::new(),
            filter_grants: String::new(),
            grant_view: Vec::new(),
            marks: BTreeSet::new(),
            input: None,
            dialog: None,
            message: None,
            activity: VecDeque::new(),
            activity_back: 0,
            quit: false,
            dirty: true,
            background_discoveries: super::update::BACKGROUND_DISCOVERIES,
            grant_offset: Cell::new(0),
            size: (80, 24),
            popup_max_scroll: Cell::new(0),
            data_dir_hint: None,
            ledger_broken: false,
            auto: false,
            auto_running: false,
            auto_next: None,
            picked: BTreeSet::new(),
            batch: None,
        };
        (model, msg)
    }

    /// Indices of leavers shown in the queue (filter applied).
    pub fn queue_view(&self) -> Vec<usize> {
        self.leavers
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                filter_matches(&self.filter_queue, |f| {
                    l.email.contains(f)
                        || l.name
                            .as_deref()
                            .is_some_and(|n| n.to_lowercase().contains(f))
                        || l.status().label().contains(f)
                })
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn selected_index(&self) -> Option<usize> {
        self.queue_view().get(self.queue_sel).copied()
    }

    pub fn selected(&self) -> Option<&LeaverRow> {
        self.selected_index().map(|i| &self.leavers[i])
    }

    pub fn leaver_mut(&mut self, email: &str) -> Option<&mut LeaverRow> {
        self.leavers.iter_mut().find(|l| l.email == email)
    }

    /// Connector ids shown as matrix rows (filter applied).
    pub fn app_view(&self) -> Vec<usize> {
        self.connectors
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                filter_matches(&self.filter_apps, |f| {
                    c.id.to_lowercase().contains(f) || c.name.to_lowercase().contains(f)
                })
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn selected_app(&self) -> Option<&ConnectorRow> {
        self.app_view()
            .get(self.matrix_sel)
            .map(|&i| &self.connectors[i])
    }

    pub fn connector_name(&self, id: &str) -> String {
        self.connectors
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The grant under the cursor in the drill-down.
    pub fn selected_grant(&self) -> Option<&GrantRow> {
        let l = self.selected()?;
        self.grant_view
            .get(self.grant_sel)
            .and_then(|&i| l.grants.get(i))
    }

    /// Recomputes [`Model::grant_view`] from the screen, leaver and filter:
    /// failed and unconfirmed grants first, then the other open ones, then
    /// the closed ones (each group in the app's order). The cursor stays on
    /// the grant it was on.
    pub fn recompute_grants(&mut self) {
        let Screen::Drill(app) = &self.screen else {
            self.grant_view.clear();
            return;
        };
        let current = self.selected_grant().map(|g| g.key.clone());
        let view: Vec<usize> = match self.selected() {
            Some(l) => {
                let mut v: Vec<usize> = l
                    .grants
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| &g.grant.connector == app)
                    .filter(|(_, g)| filter_matches(&self.filter_grants, |f| grant_matches(g, f)))
                    .map(|(i, _)| i)
                    .collect();
                v.sort_by_key(|&i| open_rank(&l.grants[i].state));
                v
            }
            None => Vec::new(),
        };
        self.grant_view = view;
        if let Some(key) = current
            && let Some(l) = self.selected()
            && let Some(pos) = self
                .grant_view
                .iter()
                .position(|&i| l.grants.get(i).is_some_and(|g| g.key == key))
        {
            self.grant_sel = pos;
        }
        if self.grant_sel >= self.grant_view.len() {
            self.grant_sel = self.grant_view.len().saturating_sub(1);
        }
    }

    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        self.activity.push_back(ActivityLine {
            at: self.now,
            level,
            text: text.into(),
        });
        while self.activity.len() > ACTIVITY_CAP {
            self.activity.pop_front();
        }
        if self.activity_back > 0 {
            self.activity_back =
                (self.activity_back + 1).min(self.activity.len().saturating_sub(1));
        }
    }

    /// Leavers whose revoke this console is running: what quitting now
    /// would interrupt. (Grants shown removing without one, e.g. read back
    /// from the ledger, are not work in flight here.)
    pub fn in_flight(&self) -> Vec<&LeaverRow> {
        self.leavers.iter().filter(|l| l.revoking).collect()
    }

    /// Whether anything is moving (the spinner turns, ticks redraw).
    pub fn busy(&self) -> bool {
        matches!(self.dialog, Some(Dialog::Login { .. }))
            || self.auto_running
            || self.batch.as_ref().is_some_and(|b| b.running)
            || self.leavers.iter().any(|l| {
                l.discovering || l.revoking || l.grants.iter().any(|g| g.state.is_removing())
            })
    }
}

/// Where a grant sorts in the drill-down: what needs a person first, then
/// the rest of what is open, then what is closed.
pub fn open_rank(s: &GrantState) -> u8 {
    match s {
        GrantState::Failed { .. } | GrantState::Unconfirmed { .. } => 0,
        s if !s.is_closed() => 1,
        _ => 2,
    }
}

/// A list filter: `|` separates alternatives (`group|license`: either), a
/// leading `!` excludes (`!group`: everything else). An item passes when it
/// matches one of the plain terms (or there are none) and none of the
/// excluded ones. `matches` gets each term lowercased and trimmed.
pub fn filter_matches(filter: &str, matches: impl Fn(&str) -> bool) -> bool {
    let f = filter.trim().to_lowercase();
    let mut plain = false;
    let mut hit = false;
    for term in f.split('|').map(str::trim).filter(|t| !t.is_empty()) {
        match term.strip_prefix('!').map(str::trim) {
            Some("") => {}
            Some(not) => {
                if matches(not) {
                    return false;
                }
            }
            None => {
                plain = true;
                hit = hit || matches(term);
            }
        }
    }
    !plain || hit
}

/// One filter term against a grant: `open` means not yet closed (verified
/// or acknowledged); `licence` is `license`; otherwise label, details,
/// kind, id, state or risk contain the term.
fn grant_matches(g: &GrantRow, f: &str) -> bool {
    if f == "open" {
        return !g.state.is_closed();
    }
    let f = if f == "licence" { "license" } else { f };
    g.grant.label.to_lowercase().contains(f)
        || g.grant.details.to_lowercase().contains(f)
        || g.grant.kind.as_str().contains(f)
        || g.grant.id.to_lowercase().contains(f)
        || g.state.name().contains(f)
        || g.grant.risk.as_str().contains(f)
}
