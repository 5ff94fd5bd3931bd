//! Views: pure functions of the model that draw into a buffer. Long lists
//! are virtualised: only the visible rows are built.

use chrono::{DateTime, Utc};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::border;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};
use unicode_width::UnicodeWidthStr;

use crate::connector::HealthState;
use crate::model::{GrantKind, GrantState, Phase};

use super::model::*;
use super::theme::Role;

const ASCII_BORDER: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

/// The whole screen.
pub struct Screen<'a>(pub &'a Model);

impl Widget for &Screen<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        draw(self.0, area, buf);
    }
}

pub fn draw(m: &Model, area: Rect, buf: &mut Buffer) {
    buf.set_style(area, m.theme.style(Role::Text));
    let activity_h = if area.height >= 34 {
        9
    } else if area.height >= 24 {
        5
    } else {
        3
    };
    let [header, body, activity, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(activity_h),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(m, header, buf);
    let wide = area.width >= 100;
    match &m.screen {
        super::model::Screen::Overview => {
            let qw = if wide { 38 } else { 30 };
            let [q, main] =
                Layout::horizontal([Constraint::Length(qw), Constraint::Min(20)]).areas(body);
            draw_queue(m, q, buf);
            draw_matrix(m, main, buf);
        }
        super::model::Screen::Drill(app) => {
            if wide {
                let [q, main] =
                    Layout::horizontal([Constraint::Length(34), Constraint::Min(20)]).areas(body);
                draw_queue(m, q, buf);
                draw_grants(m, app, main, buf);
            } else {
                draw_grants(m, app, body, buf);
            }
        }
    }
    draw_activity(m, activity, buf);
    draw_footer(m, footer, buf);
    if let Some(d) = &m.dialog {
        draw_dialog(m, d, area, buf);
    }
}

fn block<'a>(m: &Model, title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let set = if m.symbols.ascii {
        ASCII_BORDER
    } else {
        border::PLAIN
    };
    Block::bordered()
        .border_set(set)
        .border_style(m.theme.style(if focused {
            Role::FocusBorder
        } else {
            Role::Border
        }))
        .title(title)
}

pub fn state_role(s: &GrantState) -> Role {
    match s {
        GrantState::Live => Role::Live,
        GrantState::Revoking | GrantState::Removed => Role::Removing,
        GrantState::Verified { .. } => Role::Verified,
        GrantState::Unconfirmed { .. } => Role::Unconfirmed,
        GrantState::Failed { .. } => Role::Failed,
        GrantState::Manual => Role::Manual,
        GrantState::Acknowledged { .. } => Role::Acknowledged,
        // Closed by a fresh read, not by us: styled as closed, named apart.
    }
}

fn hhmmss(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%H:%M:%S")
        .to_string()
}

fn health_role(h: HealthState) -> Role {
    match h {
        HealthState::Ok => Role::Ok,
        HealthState::Degraded | HealthState::RateLimited => Role::Warning,
        HealthState::AuthError => Role::Error,
        HealthState::Unknown => Role::Muted,
    }
}

fn draw_header(m: &Model, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let hs = t.style(Role::Header);
    let row1 = Rect { height: 1, ..area };
    buf.set_style(row1, hs);
    let mode = if m.read_only { "[RO]" } else { "[RW]" };
    let clock = m
        .now
        .with_timezone(&chrono::Local)
        .format("%H:%M")
        .to_string();
    let left = Line::from(vec![
        Span::styled(" offboard ", hs),
        Span::styled(
            mode,
            if m.read_only {
                hs.patch(t.style(Role::Warning))
            } else {
                hs
            },
        ),
        Span::styled(format!("  operator: {}", m.operator), hs),
    ]);
    buf.set_line(row1.x, row1.y, &left, row1.width);
    let cw = clock.width() as u16 + 1;
    if row1.width > cw + left.width() as u16 {
        buf.set_string(row1.x + row1.width - cw, row1.y, &clock, hs);
    }
    if area.height < 2 {
        return;
    }
    let mut spans = Vec::new();
    for (i, c) in m.connectors.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(
                format!(" {} ", if m.symbols.ascii { "|" } else { "│" }),
                t.style(Role::Muted),
            ));
        }
        spans.push(Span::styled(c.name.clone(), t.style(Role::Accent)));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            c.health.label(),
            t.style(health_role(c.health)),
        ));
        if c.in_flight {
            spans.push(Span::styled(
                format!(" {}", m.symbols.spinner(m.spinner)),
                t.style(Role::Muted),
            ));
        }
        if let Some(at) = c.last_refresh {
            spans.push(Span::styled(
                format!(" {}", hhmmss(at)),
                t.style(Role::Muted),
            ));
        }
    }
    if m.connectors.is_empty() {
        spans.push(Span::styled(
            "no connectors configured",
            t.style(Role::Warning),
        ));
    }
    buf.set_line(
        area.x + 1,
        area.y + 1,
        &Line::from(spans),
        area.width.saturating_sub(1),
    );
}

fn exit_label(exit: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<String> {
    let exit = exit?;
    let days = (exit.date_naive() - now.date_naive()).num_days();
    Some(match days {
        0 => "exit today".into(),
        1 => "exit tomorrow".into(),
        d if d > 1 => format!("exit in {d}d"),
        d => format!("left {}d ago", -d),
    })
}

fn status_role(s: &LeaverStatus) -> Role {
    match s {
        LeaverStatus::Queued | LeaverStatus::NothingFound => Role::Muted,
        LeaverStatus::Discovering | LeaverStatus::Revoking => Role::Removing,
        LeaverStatus::Live(_) => Role::Live,
        LeaverStatus::AllVerified => Role::Verified,
        LeaverStatus::NeedsAttention(_) => Role::Unconfirmed,
    }
}

fn draw_queue(m: &Model, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let title = if m.filter_queue.is_empty() {
        format!(" Leavers ({}) ", m.leavers.len())
    } else {
        format!(" Leavers /{} ", m.filter_queue)
    };
    let focused = m.focus == Focus::Queue;
    let b = block(m, title, focused);
    let inner = b.inner(area);
    b.render(area, buf);
    let view = m.queue_view();
    let per = 2u16;
    let fit = (inner.height / per).max(1) as usize;
    let offset = m.queue_sel.saturating_sub(fit - 1);
    for (row, &i) in view.iter().enumerate().skip(offset).take(fit) {
        let l = &m.leavers[i];
        let y = inner.y + (row - offset) as u16 * per;
        let sel = row == m.queue_sel;
        let r = Rect {
            x: inner.x,
            y,
            width: inner.width,
            height: per.min(inner.y + inner.height - y),
        };
        if sel {
            buf.set_style(
                r,
                t.style(if focused {
                    Role::Selection
                } else {
                    Role::Accent
                }),
            );
        }
        let pointer = if sel { m.symbols.pointer() } else { " " };
        buf.set_stringn(
            r.x,
            y,
            format!("{pointer} {}", l.email),
            r.width as usize,
            Style::default(),
        );
        if r.height < 2 {
            continue;
        }
        let status = l.status();
        let mut spans = vec![Span::raw("  ")];
        if matches!(status, LeaverStatus::Discovering | LeaverStatus::Revoking) {
            spans.push(Span::styled(
                format!("{} ", m.symbols.spinner(m.spinner)),
                t.style(Role::Removing),
            ));
        }
        spans.push(Span::styled(status.label(), t.style(status_role(&status))));
        if let Some(e) = exit_label(l.exit_at, m.now) {
            spans.push(Span::styled(
                format!(" {} {e}", m.symbols.dot()),
                t.style(Role::Muted),
            ));
        }
        buf.set_line(r.x, y + 1, &Line::from(spans), r.width);
    }
    if view.is_empty() {
        let text = if m.leavers.is_empty() {
            "no leavers: `:add EMAIL`"
        } else {
            "no match"
        };
        buf.set_stringn(
            inner.x + 1,
            inner.y,
            text,
            inner.width as usize,
            t.style(Role::Muted),
        );
    }
}

/// Matrix columns by priority: the first are kept when space is short.
const KIND_PRIORITY: [GrantKind; 12] = [
    GrantKind::Session,
    GrantKind::OauthGrant,
    GrantKind::ApiKey,
    GrantKind::AppPassword,
    GrantKind::AdminRole,
    GrantKind::Account,
    GrantKind::BackupCodes,
    GrantKind::Delegation,
    GrantKind::OwnedApp,
    GrantKind::Group,
    GrantKind::License,
    GrantKind::Device,
];

fn kind_short(k: GrantKind) -> &'static str {
    match k {
        GrantKind::Account => "acct",
        GrantKind::Session => "sess",
        GrantKind::OauthGrant => "oauth",
        GrantKind::AppPassword => "apppw",
        GrantKind::BackupCodes => "codes",
        GrantKind::ApiKey => "apikey",
        GrantKind::License => "lic",
        GrantKind::Group => "group",
        GrantKind::AdminRole => "admin",
        GrantKind::Device => "device",
        GrantKind::Delegation => "deleg",
        GrantKind::OwnedApp => "owned",
    }
}

/// The state that colours a cell: what most needs the operator's eye.
fn dominant<'a>(states: impl Iterator<Item = &'a GrantState>) -> Option<Role> {
    let rank = |s: &GrantState| match s {
        GrantState::Failed { .. } => 7,
        GrantState::Unconfirmed { .. } => 6,
        GrantState::Live => 5,
        GrantState::Revoking | GrantState::Removed => 4,
        GrantState::Manual => 3,
        GrantState::Verified { .. } => 1,
        GrantState::Acknowledged { .. } => 0,
    };
    states.max_by_key(|s| rank(s)).map(state_role)
}

fn summary_spans<'a>(m: &Model, l: &LeaverRow) -> Vec<Span<'a>> {
    let t = &m.theme;
    let mut counts = [0usize; 7];
    for g in &l.grants {
        let i = match g.state {
            GrantState::Live => 0,
            GrantState::Revoking | GrantState::Removed => 1,
            GrantState::Verified { .. } => 2,
            GrantState::Acknowledged { .. } => 3,
            GrantState::Unconfirmed { .. } => 4,
            GrantState::Failed { .. } => 5,
            GrantState::Manual => 6,
        };
        counts[i] += 1;
    }
    let names = [
        ("live", Role::Live),
        ("removing", Role::Removing),
        ("verified", Role::Verified),
        ("acknowledged", Role::Acknowledged),
        ("unconfirmed", Role::Unconfirmed),
        ("failed", Role::Failed),
        ("manual", Role::Manual),
    ];
    let mut spans = Vec::new();
    for (i, (name, role)) in names.iter().enumerate() {
        if counts[i] > 0 {
            spans.push(Span::styled(
                format!(" {} {name} ", counts[i]),
                t.style(*role),
            ));
        }
    }
    let open = counts[0] + counts[1] + counts[4] + counts[5] + counts[6];
    spans.push(Span::styled(format!(" {open} left "), t.style(Role::Muted)));
    spans
}

fn draw_matrix(m: &Model, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let focused = m.focus == Focus::Matrix;
    let Some(l) = m.selected() else {
        let b = block(m, " Access ", focused);
        let inner = b.inner(area);
        b.render(area, buf);
        buf.set_stringn(
            inner.x + 1,
            inner.y,
            "select a leaver",
            inner.width as usize,
            t.style(Role::Muted),
        );
        return;
    };
    let who = match &l.name {
        Some(n) => format!(" {n} <{}> ", l.email),
        None => format!(" {} ", l.email),
    };
    let b = block(
        m,
        Line::from(Span::styled(who, t.style(Role::Accent))),
        focused,
    )
    .title_bottom(Line::from(summary_spans(m, l)));
    let mut inner = b.inner(area);
    b.render(area, buf);
    // Revoke-all gauge, by phase.
    if l.revoking && !l.progress.is_empty() && inner.height > 3 {
        draw_gauge(m, l, Rect { height: 1, ..inner }, buf);
        inner.y += 1;
        inner.height -= 1;
    }
    // Columns: app, account, open, then the kinds present, by priority.
    let present: Vec<GrantKind> = KIND_PRIORITY
        .into_iter()
        .filter(|k| l.grants.iter().any(|g| g.grant.kind == *k))
        .collect();
    let app_w: u16 = if inner.width >= 56 { 18 } else { 12 };
    let acct_w: u16 = 10;
    let open_w: u16 = 5;
    let mut used = app_w + acct_w + open_w;
    let mut kinds = Vec::new();
    for k in &present {
        let w = kind_short(*k).len() as u16 + 1;
        if used + w > inner.width {
            break;
        }
        used += w;
        kinds.push((*k, w));
    }
    let dropped = present.len() - kinds.len();
    let hdr = t.style(Role::Muted);
    let mut x = inner.x;
    buf.set_stringn(x, inner.y, "app", app_w as usize, hdr);
    x += app_w;
    buf.set_stringn(x, inner.y, "account", acct_w as usize, hdr);
    x += acct_w;
    buf.set_stringn(x, inner.y, "open", open_w as usize, hdr);
    x += open_w;
    for (k, w) in &kinds {
        buf.set_stringn(x, inner.y, kind_short(*k), *w as usize, hdr);
        x += w;
    }
    if dropped > 0 && x + 8 <= inner.x + inner.width {
        buf.set_stringn(x, inner.y, format!("+{dropped} kinds"), 9, hdr);
    }
    let view = m.app_view();
    for (row, &ci) in view.iter().enumerate() {
        let y = inner.y + 1 + row as u16;
        if y >= inner.y + inner.height {
            break;
        }
        let c = &m.connectors[ci];
        let rect = Rect {
            x: inner.x,
            y,
            width: inner.width,
            height: 1,
        };
        let sel = row == m.matrix_sel;
        if sel && focused {
            buf.set_style(rect, t.style(Role::Selection));
        }
        let mut x = inner.x;
        let pointer = if sel { m.symbols.pointer() } else { " " };
        buf.set_stringn(
            x,
            y,
            format!("{pointer}{}", c.name),
            app_w as usize - 1,
            Style::default(),
        );
        x += app_w;
        let (acct, role) = match l.accounts.get(&c.id) {
            Some(a @ AccountStatus::Failed { .. }) => (a.label(), Role::Error),
            Some(a @ AccountStatus::Ambiguous { .. }) => (a.label(), Role::Warning),
            Some(a @ AccountStatus::Found { active: true, .. }) => (a.label(), Role::Text),
            Some(a) => (a.label(), Role::Muted),
            None => ("-".to_string(), Role::Muted),
        };
        buf.set_stringn(x, y, acct, acct_w as usize - 1, t.style(role));
        x += acct_w;
        let grants: Vec<&GrantRow> = l
            .grants
            .iter()
            .filter(|g| g.grant.connector == c.id)
            .collect();
        let open = grants.iter().filter(|g| !g.state.is_closed()).count();
        let open_role = if open > 0 {
            dominant(grants.iter().map(|g| &g.state)).unwrap_or(Role::Text)
        } else {
            Role::Verified
        };
        buf.set_stringn(
            x,
            y,
            open.to_string(),
            open_w as usize - 1,
            t.style(open_role),
        );
        x += open_w;
        for (k, w) in &kinds {
            let of_kind = grants.iter().filter(|g| g.grant.kind == *k);
            let n = of_kind.clone().count();
            if n > 0 {
                let role = dominant(of_kind.map(|g| &g.state)).unwrap_or(Role::Text);
                buf.set_stringn(x, y, n.to_string(), *w as usize - 1, t.style(role));
            } else {
                buf.set_stringn(x, y, m.symbols.dot(), 1, t.style(Role::Muted));
            }
            x += w;
        }
    }
}

fn draw_gauge(m: &Model, l: &LeaverRow, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let (done, total): (usize, usize) = l
        .progress
        .values()
        .fold((0, 0), |(d, n), (a, b)| (d + a, n + b));
    let current = l
        .progress
        .iter()
        .find(|(_, (d, n))| d < n)
        .map(|(p, _)| *p)
        .unwrap_or(Phase::CloseAccount);
    let label = format!(
        " phase {}/3 {} {done}/{total} ",
        current.number(),
        current.title()
    );
    let bar_w = area.width.saturating_sub(label.width() as u16 + 2) as usize;
    let filled = (bar_w * done).checked_div(total).unwrap_or(0).min(bar_w);
    let (full, empty) = m.symbols.bar();
    let bar = format!("{}{}", full.repeat(filled), empty.repeat(bar_w - filled));
    let line = Line::from(vec![
        Span::styled(label, t.style(Role::Accent)),
        Span::styled(bar, t.style(Role::Removing)),
    ]);
    buf.set_line(area.x, area.y, &line, area.width);
}

fn draw_grants(m: &Model, app: &str, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let focused = m.focus == Focus::Grants;
    let name = m.connector_name(app);
    let who = m.selected().map(|l| l.email.clone()).unwrap_or_default();
    let mut title = format!(
        " {name} {} {who} ({}) ",
        m.symbols.dot(),
        m.grant_view.len()
    );
    if !m.filter_grants.is_empty() {
        title.push_str(&format!("/{} ", m.filter_grants));
    }
    if !m.marks.is_empty() {
        title.push_str(&format!("{} marked ", m.marks.len()));
    }
    let b = block(
        m,
        Line::from(Span::styled(title, t.style(Role::Accent))),
        focused,
    );
    let b = match m.selected() {
        Some(l) => b.title_bottom(Line::from(summary_spans(m, l))),
        None => b,
    };
    let mut inner = b.inner(area);
    b.render(area, buf);
    let Some(l) = m.selected() else {
        return;
    };
    if l.revoking && !l.progress.is_empty() && inner.height > 3 {
        draw_gauge(m, l, Rect { height: 1, ..inner }, buf);
        inner.y += 1;
        inner.height -= 1;
    }
    if inner.height < 2 || inner.width < 10 {
        return;
    }
    // Columns and their widths; drop by priority when narrow.
    let w = inner.width;
    let show_details = w >= 90;
    let show_since = w >= 70;
    let show_risk = w >= 60;
    let show_kind = w >= 50;
    let mark_w = 2u16;
    let state_w = 20u16;
    let since_w = if show_since { 10 } else { 0 };
    let risk_w = if show_risk { 9 } else { 0 };
    let kind_w = if show_kind { 13 } else { 0 };
    let fixed = mark_w + state_w + since_w + risk_w + kind_w;
    let flex = w.saturating_sub(fixed);
    let (label_w, details_w) = if show_details {
        (flex * 11 / 20, flex - flex * 11 / 20)
    } else {
        (flex, 0)
    };
    let hdr = t.style(Role::Muted);
    let mut x = inner.x + mark_w;
    for (text, width) in [
        ("grant", label_w),
        ("kind", kind_w),
        ("risk", risk_w),
        ("state", state_w),
        ("since", since_w),
        ("details", details_w),
    ] {
        if width > 0 {
            buf.set_stringn(x, inner.y, text, width as usize, hdr);
            x += width;
        }
    }
    let rows = (inner.height - 1) as usize;
    // Keep the selection visible; remember the scroll between frames.
    let mut offset = m.grant_offset.get();
    if m.grant_sel < offset {
        offset = m.grant_sel;
    } else if m.grant_sel >= offset + rows {
        offset = m.grant_sel + 1 - rows;
    }
    offset = offset.min(m.grant_view.len().saturating_sub(rows));
    m.grant_offset.set(offset);
    let end = (offset + rows).min(m.grant_view.len());
    for (row, &gi) in m.grant_view[offset..end].iter().enumerate() {
        let g = &l.grants[gi];
        let y = inner.y + 1 + row as u16;
        let rect = Rect {
            x: inner.x,
            y,
            width: inner.width,
            height: 1,
        };
        let role = state_role(&g.state);
        let base = t.style(role);
        buf.set_style(rect, base);
        let marked = m.marks.contains(&g.key);
        if marked {
            buf.set_stringn(inner.x, y, m.symbols.mark(), 1, t.style(Role::Mark));
        }
        let mut x = inner.x + mark_w;
        let cell = |buf: &mut Buffer, x: &mut u16, text: &str, width: u16, style: Style| {
            if width > 0 {
                let room = width.saturating_sub(1) as usize;
                if text.width() > room && room > 1 {
                    let cut = truncate(text, room.saturating_sub(1));
                    buf.set_stringn(
                        *x,
                        y,
                        format!("{cut}{}", if m.symbols.ascii { "~" } else { "…" }),
                        room,
                        style,
                    );
                } else {
                    buf.set_stringn(*x, y, text, room, style);
                }
                *x += width;
            }
        };
        cell(buf, &mut x, &g.grant.label, label_w, base);
        cell(buf, &mut x, g.grant.kind.as_str(), kind_w, base);
        cell(buf, &mut x, g.grant.risk.as_str(), risk_w, base);
        let state_text = match &g.state {
            GrantState::Revoking | GrantState::Removed => {
                format!("removing {}", m.symbols.spinner(m.spinner))
            }
            GrantState::Verified { at } => format!("verified {}", hhmmss(*at)),
            GrantState::Manual if g.grant.is_manual() => "manual step".to_string(),
            other => other.to_string(),
        };
        cell(buf, &mut x, &state_text, state_w, base);
        let since = g.since_state.map(hhmmss).unwrap_or_default();
        cell(buf, &mut x, &since, since_w, base);
        let details = match (&g.state, &g.answer) {
            (GrantState::Failed { .. } | GrantState::Unconfirmed { .. }, Some(a)) => {
                format!("{a} {}", g.grant.details)
            }
            _ => g.grant.details.clone(),
        };
        cell(buf, &mut x, &details, details_w, base);
        if offset + row == m.grant_sel && focused {
            buf.set_style(rect, t.style(Role::Selection));
        }
    }
    if m.grant_view.is_empty() {
        let text = if m.filter_grants.is_empty() {
            "no grants in this app"
        } else {
            "no grant matches the filter"
        };
        buf.set_stringn(
            inner.x + 2,
            inner.y + 1,
            text,
            inner.width as usize - 2,
            t.style(Role::Muted),
        );
    }
}

fn truncate(s: &str, width: usize) -> &str {
    let mut w = 0;
    for (i, c) in s.char_indices() {
        let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw > width {
            return &s[..i];
        }
        w += cw;
    }
    s
}

fn draw_activity(m: &Model, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let focused = m.focus == Focus::Activity;
    let title = if m.activity_back > 0 {
        format!(" Activity (-{}) ", m.activity_back)
    } else {
        " Activity ".to_string()
    };
    let b = block(m, title, focused);
    let inner = b.inner(area);
    b.render(area, buf);
    let rows = inner.height as usize;
    let end = m.activity.len().saturating_sub(m.activity_back);
    let start = end.saturating_sub(rows);
    for (i, line) in m.activity.range(start..end).enumerate() {
        let role = match line.level {
            Level::Info => Role::Text,
            Level::Good => Role::Verified,
            Level::Warn => Role::Warning,
            Level::Error => Role::Error,
        };
        let l = Line::from(vec![
            Span::styled(format!("{} ", hhmmss(line.at)), t.style(Role::Muted)),
            Span::styled(line.text.as_str(), t.style(role)),
        ]);
        buf.set_line(inner.x, inner.y + i as u16, &l, inner.width);
    }
}

/// Key hints for the current view (action keys hidden in read-only mode).
pub fn hints(m: &Model) -> Vec<(&'static str, &'static str)> {
    let rw = !m.read_only;
    let mut h: Vec<(&str, &str)> = Vec::new();
    match m.focus {
        Focus::Queue => {
            h.push(("Enter", "open"));
            if rw {
                h.push(("R", "revoke all"));
            }
        }
        Focus::Matrix => {
            h.push(("Enter", "drill in"));
            if rw {
                h.push(("r", "revoke app"));
                h.push(("R", "revoke all"));
            }
        }
        Focus::Grants => {
            if rw {
                h.push(("Space", "mark"));
                h.push(("r", "revoke/retry"));
                h.push(("Enter", "manual done"));
                h.push(("R", "all"));
            }
        }
        Focus::Activity => {}
    }
    if matches!(m.screen, super::model::Screen::Drill(_)) || m.focus != Focus::Queue {
        h.push(("Esc", "back"));
    }
    h.extend([
        ("?", "help"),
        ("q", "quit"),
        ("/", "filter"),
        ("Tab", "pane"),
        (":", "cmd"),
        ("v", "refresh"),
        ("j/k", "move"),
    ]);
    h
}

fn draw_footer(m: &Model, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    if let Some(input) = &m.input {
        let (prefix, text) = match input {
            Input::Command(s) => (":", s),
            Input::Filter(s) => ("/", s),
        };
        let line = Line::from(vec![
            Span::styled(prefix, t.style(Role::Accent)),
            Span::raw(text.as_str()),
            Span::styled(
                if m.symbols.ascii { "_" } else { "▏" },
                t.style(Role::Accent),
            ),
        ]);
        buf.set_line(area.x, area.y, &line, area.width);
        return;
    }
    if let Some((level, text)) = &m.message {
        let role = match level {
            Level::Info => Role::Accent,
            Level::Good => Role::Verified,
            Level::Warn => Role::Warning,
            Level::Error => Role::Error,
        };
        buf.set_stringn(area.x, area.y, text, area.width as usize, t.style(role));
        return;
    }
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (k, what) in hints(m) {
        let w = k.width() + what.width() + 3;
        if used + w > area.width as usize {
            break;
        }
        used += w;
        spans.push(Span::styled(format!(" {k}"), t.style(Role::Accent)));
        spans.push(Span::styled(format!(" {what} "), t.style(Role::Muted)));
    }
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_dialog(m: &Model, d: &Dialog, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    match d {
        Dialog::Confirm {
            email,
            count,
            labels,
            retry,
            yes_focused,
            ..
        } => {
            let r = popup(area, 64, 9 + labels.len().min(5) as u16);
            Clear.render(r, buf);
            let verb = if *retry { "Retry revoking" } else { "Revoke" };
            let b = block(
                m,
                Span::styled(format!(" {verb} "), t.style(Role::Danger)),
                true,
            )
            .border_style(t.style(Role::Danger));
            let inner = b.inner(r);
            b.render(r, buf);
            let mut lines = vec![
                Line::from(format!("{verb} {count} grant(s) for {email}?")),
                Line::from(""),
            ];
            for l in labels.iter().take(5) {
                lines.push(Line::from(format!("  {} {l}", m.symbols.dot())));
            }
            if *count > labels.len() && labels.len() > 1 {
                lines.push(Line::from(format!("  and {} more", count - labels.len())));
            }
            Paragraph::new(lines).render(
                Rect {
                    height: inner.height.saturating_sub(2),
                    ..inner
                },
                buf,
            );
            let by = inner.y + inner.height.saturating_sub(1);
            let cancel = " Cancel ";
            let yes = if *retry { " Retry " } else { " Revoke " };
            let cancel_style = if *yes_focused {
                t.style(Role::Text)
            } else {
                t.style(Role::Selection)
            };
            let yes_style = if *yes_focused {
                t.style(Role::Danger)
            } else {
                t.style(Role::Muted)
            };
            let bx = inner.x + inner.width.saturating_sub(22) / 2;
            let (lb, rb) = ("[", "]");
            buf.set_string(bx, by, lb, t.style(Role::Muted));
            buf.set_string(bx + 1, by, cancel, cancel_style);
            buf.set_string(bx + 1 + cancel.len() as u16, by, rb, t.style(Role::Muted));
            let yx = bx + cancel.len() as u16 + 4;
            buf.set_string(yx, by, lb, t.style(Role::Muted));
            buf.set_string(yx + 1, by, yes, yes_style);
            buf.set_string(yx + 1 + yes.len() as u16, by, rb, t.style(Role::Muted));
        }
        Dialog::RevokeAll {
            email,
            typed,
            count,
        } => {
            let r = popup(area, 70, 9);
            Clear.render(r, buf);
            let b = block(
                m,
                Span::styled(" Revoke everything ", t.style(Role::Danger)),
                true,
            )
            .border_style(t.style(Role::Danger));
            let inner = b.inner(r);
            b.render(r, buf);
            let lines = vec![
                Line::from(format!(
                    "Cut all access of {email}: {count} grant(s), in phases."
                )),
                Line::from("Type the leaver's email to confirm:"),
                Line::from(""),
                Line::from(vec![
                    Span::styled("> ", t.style(Role::Accent)),
                    Span::raw(typed.as_str()),
                    Span::styled(
                        if m.symbols.ascii { "_" } else { "▏" },
                        t.style(Role::Accent),
                    ),
                ]),
                Line::from(""),
                Line::from(Span::styled(
                    "Enter confirm   Esc cancel",
                    t.style(Role::Muted),
                )),
            ];
            Paragraph::new(lines).render(inner, buf);
        }
        Dialog::ManualNote {
            label,
            instructions,
            note,
            ..
        } => {
            let r = popup(area, 72, 12);
            Clear.render(r, buf);
            let b = block(
                m,
                Span::styled(" Manual step done ", t.style(Role::Manual)),
                true,
            );
            let inner = b.inner(r);
            b.render(r, buf);
            let lines = vec![
                Line::from(Span::styled(label.as_str(), t.style(Role::Accent))),
                Line::from(instructions.as_str()),
                Line::from(""),
                Line::from("Note for the evidence ledger (what was done, by whom):"),
                Line::from(vec![
                    Span::styled("> ", t.style(Role::Accent)),
                    Span::raw(note.as_str()),
                    Span::styled(
                        if m.symbols.ascii { "_" } else { "▏" },
                        t.style(Role::Accent),
                    ),
                ]),
                Line::from(Span::styled(
                    "Enter record   Esc cancel",
                    t.style(Role::Muted),
                )),
            ];
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .render(inner, buf);
        }
        Dialog::Help => {
            let r = popup(area, 66, 22);
            Clear.render(r, buf);
            let b = block(m, " Help ", true);
            let inner = b.inner(r);
            b.render(r, buf);
            let mut rows: Vec<(&str, &str)> = vec![
                ("j/k, arrows", "move"),
                ("Tab", "switch pane"),
                ("Enter", "drill in"),
                ("Esc", "go back, clear filter"),
                ("/", "filter the current list"),
                (":add EMAIL", "queue a leaver"),
                (":app NAME", "open an app's grants"),
                (":theme NAME", "switch theme"),
                (":export", "write the evidence report"),
                (":login APP", "sign in to an app"),
                (":quit, q", "quit"),
                ("v, Ctrl-R", "refresh now"),
            ];
            if !m.read_only {
                rows.extend([
                    ("Space", "mark a grant"),
                    ("r", "revoke marked/selected (retry failed)"),
                    ("R", "revoke everything (type the email)"),
                    ("Enter (manual)", "mark a manual step done"),
                ]);
            }
            let lines: Vec<Line> = rows
                .into_iter()
                .map(|(k, v)| {
                    Line::from(vec![
                        Span::styled(format!("{k:<16}"), t.style(Role::Accent)),
                        Span::raw(v),
                    ])
                })
                .collect();
            Paragraph::new(lines).render(inner, buf);
        }
    }
}
