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

/// The smallest terminal the console lays out in; below it, it says so
/// (and keeps running: growing the window brings the view back).
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;

pub fn draw(m: &Model, area: Rect, buf: &mut Buffer) {
    buf.set_style(area, m.theme.style(Role::Text));
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(m, area, buf);
        return;
    }
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
            let qw = if wide {
                38
            } else if area.width >= 72 {
                32
            } else {
                area.width * 2 / 5
            };
            let [q, main] =
                Layout::horizontal([Constraint::Length(qw), Constraint::Min(20)]).areas(body);
            draw_queue(m, q, buf);
            match &m.batch {
                Some(b) => draw_batch(m, b, main, buf),
                None => draw_matrix(m, main, buf),
            }
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

/// A batch's progress: a bar per app and overall, each with the time left
/// estimated from the app's quota; then who was not started, once the
/// circuit breaker paused it.
fn draw_batch(m: &Model, b: &super::model::BatchView, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let title = if b.running {
        format!(" Batch: {} leaver(s) ", b.emails.len())
    } else {
        format!(" Batch: {} leaver(s), ended (Esc closes) ", b.emails.len())
    };
    let blk = block(m, title, m.focus == Focus::Matrix);
    let inner = blk.inner(area);
    blk.render(area, buf);
    let w = inner.width as usize;
    // The bar takes what the numbers leave: name, counts, time left.
    let name_w = b
        .progress
        .apps
        .keys()
        .map(|a| a.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let bar_w = w.saturating_sub(name_w + 50).clamp(4, 30);
    let mut lines: Vec<Line> = Vec::new();
    for l in b.progress.lines(bar_w) {
        let role = if l.starts_with("overall") {
            Role::Accent
        } else {
            Role::Text
        };
        if l.width() <= w {
            lines.push(Line::from(Span::styled(l, t.style(role))));
        } else {
            for part in wrap_text(&l, w.max(10)) {
                lines.push(Line::from(Span::styled(part, t.style(role))));
            }
        }
    }
    if let Some(why) = &b.paused {
        lines.push(Line::from(""));
        for part in wrap_text(&format!("PAUSED by the circuit breaker: {why}"), w.max(10)) {
            lines.push(Line::from(Span::styled(part, t.style(Role::Danger))));
        }
        for e in &b.not_started {
            lines.push(Line::from(format!("  not started: {e}")));
        }
    }
    for f in b.progress.finished.iter().rev() {
        lines.push(Line::from(Span::styled(
            ellipsize(f, w, m.symbols.ellipsis_short()),
            t.style(Role::Muted),
        )));
    }
    lines.truncate(inner.height as usize);
    Paragraph::new(lines).render(inner, buf);
}

fn draw_too_small(m: &Model, area: Rect, buf: &mut Buffer) {
    let text = format!(
        "terminal too small ({} x {}, need {MIN_WIDTH} x {MIN_HEIGHT}); enlarge it, or q to quit",
        area.width, area.height
    );
    for (i, line) in wrap_text(&text, area.width as usize)
        .into_iter()
        .take(area.height as usize)
        .enumerate()
    {
        buf.set_stringn(
            area.x,
            area.y + i as u16,
            line,
            area.width as usize,
            m.theme.style(Role::Warning),
        );
    }
}

/// Cuts `text` to `width` columns with `ell` at the end, at a word
/// boundary (space, `.`, `@`, `,`, `-`, `/`) when one keeps at least half
/// of the room; the whole text when it fits.
pub fn ellipsize(text: &str, width: usize, ell: &str) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let ew = ell.width();
    if width <= ew {
        return truncate(text, width).to_string();
    }
    let room = width - ew;
    let cut = truncate(text, room);
    let boundary = |c: char| matches!(c, ' ' | '.' | '@' | ',' | '-' | '/' | ';' | ':');
    let at_word_end = text[cut.len()..].starts_with(boundary);
    let cut = if at_word_end {
        cut
    } else {
        match cut.rfind(boundary) {
            Some(i) if cut[..i].width() * 2 >= room => &cut[..i],
            _ => cut,
        }
    };
    format!("{}{ell}", cut.trim_end_matches([' ', ',', ';', ':']))
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

fn hhmm(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::Local).format("%H:%M").to_string()
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
    let mut left = left;
    if m.auto {
        left.spans
            .push(Span::styled("  AUTO", hs.patch(t.style(Role::Warning))));
    }
    if let Some(b) = m.batch.as_ref().filter(|b| b.running) {
        left.spans.push(Span::styled(
            format!("  BATCH {}/{}", b.progress.done, b.progress.leavers),
            hs.patch(t.style(Role::Warning)),
        ));
    }
    if m.ledger_broken {
        left.spans.push(Span::styled(
            "  LEDGER CHAIN BROKEN",
            hs.patch(t.style(Role::Danger)),
        ));
    }
    buf.set_line(row1.x, row1.y, &left, row1.width);
    let cw = clock.width() as u16 + 1;
    if row1.width > cw + left.width() as u16 {
        buf.set_string(row1.x + row1.width - cw, row1.y, &clock, hs);
    }
    if area.height < 2 {
        return;
    }
    let spans = header_health(m, area.width.saturating_sub(1) as usize);
    let mut spans = spans;
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

/// The header's health line, made shorter until it fits: full names with
/// times, then without times, then connector ids, then only the apps that
/// are not ok (by id, first) and a count of those that are.
fn header_health<'a>(m: &Model, width: usize) -> Vec<Span<'a>> {
    let t = &m.theme;
    let sep = if m.symbols.ascii { " | " } else { " │ " };
    let spans = header_health_each(m, width, sep);
    let w: usize = spans.iter().map(|s| s.width()).sum();
    if w <= width {
        return spans;
    }
    let mut spans = Vec::new();
    let ok = m
        .connectors
        .iter()
        .filter(|c| c.health == HealthState::Ok)
        .count();
    for c in m.connectors.iter().filter(|c| c.health != HealthState::Ok) {
        spans.push(Span::styled(c.id.clone(), t.style(Role::Accent)));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            health_label(m, c.health),
            t.style(health_role(c.health)),
        ));
        spans.push(Span::styled(sep, t.style(Role::Muted)));
    }
    let in_flight = m.connectors.iter().any(|c| c.in_flight);
    spans.push(Span::styled(
        if ok == m.connectors.len() {
            format!("all {ok} apps ok")
        } else {
            format!("{ok} more ok")
        },
        t.style(health_role(HealthState::Ok)),
    ));
    if in_flight {
        spans.push(Span::styled(
            format!(" {}", m.symbols.spinner(m.spinner)),
            t.style(Role::Muted),
        ));
    }
    spans
}

/// [`header_health`] with every app named: the longest form that fits, or
/// the shortest.
fn header_health_each<'a>(m: &Model, width: usize, sep: &'static str) -> Vec<Span<'a>> {
    let t = &m.theme;
    for (long_names, times) in [(true, true), (true, false), (false, false)] {
        let mut spans = Vec::new();
        for (i, c) in m.connectors.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(sep, t.style(Role::Muted)));
            }
            let name = if long_names { &c.name } else { &c.id };
            spans.push(Span::styled(name.clone(), t.style(Role::Accent)));
            spans.push(Span::raw(" "));
            spans.push(Span::styled(
                health_label(m, c.health),
                t.style(health_role(c.health)),
            ));
            if c.in_flight {
                spans.push(Span::styled(
                    format!(" {}", m.symbols.spinner(m.spinner)),
                    t.style(Role::Muted),
                ));
            }
            if times && let Some(at) = c.last_refresh {
                spans.push(Span::styled(
                    format!(" {}", hhmmss(at)),
                    t.style(Role::Muted),
                ));
            }
        }
        let w: usize = spans.iter().map(|s| s.width()).sum();
        if w <= width || !long_names {
            return spans;
        }
    }
    Vec::new()
}

pub fn health_label(m: &Model, h: HealthState) -> &'static str {
    match h {
        HealthState::Unknown => m.symbols.ellipsis(),
        other => other.label(),
    }
}

fn exit_label(exit: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<String> {
    // "due in 2h", "overdue 3d 4h": the same words as `run --due`.
    Some(crate::fleet::policy::due_text(exit?, now))
}

fn status_role(s: &LeaverStatus) -> Role {
    match s {
        LeaverStatus::Queued | LeaverStatus::NothingFound => Role::Muted,
        LeaverStatus::Discovering | LeaverStatus::Revoking => Role::Removing,
        LeaverStatus::Live(..) => Role::Live,
        LeaverStatus::DiscoveryFailed | LeaverStatus::NotFoundAnywhere => Role::Error,
        LeaverStatus::AllVerified => Role::Verified,
        LeaverStatus::NeedsAttention(_) => Role::Unconfirmed,
    }
}

fn draw_queue(m: &Model, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let title = if m.filter_queue.is_empty() && !m.picked.is_empty() {
        format!(" Leavers ({}, {} picked) ", m.leavers.len(), m.picked.len())
    } else if m.filter_queue.is_empty() {
        format!(" Leavers ({}) ", m.leavers.len())
    } else {
        format!(" Leavers /{} ", m.filter_queue)
    };
    let focused = m.focus == Focus::Queue;
    let view = m.queue_view();
    let per = 2u16;
    let fit = (area.height.saturating_sub(2) / per).max(1) as usize;
    let mut b = block(m, title, focused);
    if view.len() > fit {
        // Where the cursor is, when leavers are out of sight.
        b = b.title_bottom(
            Line::from(Span::styled(
                format!(" {}/{} ", (m.queue_sel + 1).min(view.len()), view.len()),
                t.style(Role::Muted),
            ))
            .right_aligned(),
        );
    }
    let inner = b.inner(area);
    b.render(area, buf);
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
        let pick = if m.picked.contains(&l.email) {
            "*"
        } else {
            " "
        };
        buf.set_stringn(
            r.x,
            y,
            format!(
                "{pointer}{pick}{}",
                ellipsize(
                    &l.email,
                    (r.width as usize).saturating_sub(2),
                    m.symbols.ellipsis_short()
                )
            ),
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
        // Only the selected leaver is refreshed live: say how old the
        // others' status is.
        if !sel
            && l.discovered
            && !matches!(status, LeaverStatus::Revoking)
            && let Some(at) = l.as_of
        {
            let text = format!(" as of {}", hhmm(at));
            let used: usize = spans.iter().map(|s| s.width()).sum();
            if used + text.width() <= r.width as usize {
                spans.push(Span::styled(text, t.style(Role::Muted)));
            }
        }
        if let Some((who, since)) = &l.holder {
            // Another host's lease: watch only.
            // Shown even when cut short: it says why no action is taken.
            let text = format!(" {} held: {who} {}", m.symbols.dot(), hhmm(*since));
            spans.push(Span::styled(text, t.style(Role::Warning)));
        }
        if let Some(e) = exit_label(l.exit_at, m.now) {
            // Past the exit time with access still open: highlighted, with
            // how long it has stayed open.
            let overdue = l.exit_at.is_some_and(|x| x <= m.now)
                && !matches!(
                    status,
                    LeaverStatus::AllVerified | LeaverStatus::NothingFound
                );
            let open = overdue
                && matches!(
                    status,
                    LeaverStatus::Live(..)
                        | LeaverStatus::NeedsAttention(_)
                        | LeaverStatus::Revoking
                );
            let text = if open {
                format!(" {} {e}: still open", m.symbols.dot())
            } else {
                format!(" {} {e}", m.symbols.dot())
            };
            let used: usize = spans.iter().map(|s| s.width()).sum();
            if used + text.width() <= r.width as usize {
                let role = if overdue { Role::Danger } else { Role::Muted };
                spans.push(Span::styled(text, t.style(role)));
            }
        }
        // Cut with an ellipsis at a word boundary, never mid-word.
        let mut room = r.width as usize;
        let spans: Vec<Span> = spans
            .into_iter()
            .filter_map(|s| {
                if room == 0 {
                    return None;
                }
                let text = ellipsize(&s.content, room, m.symbols.ellipsis_short());
                room = room.saturating_sub(text.width());
                Some(Span::styled(text, s.style))
            })
            .collect();
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

pub fn kind_short(k: GrantKind) -> &'static str {
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

/// The state that most needs the operator's eye.
fn dominant_state<'a>(states: impl Iterator<Item = &'a GrantState>) -> Option<&'a GrantState> {
    let rank = |s: &GrantState| match s {
        GrantState::Failed { .. } => 7,
        GrantState::Unconfirmed { .. } => 6,
        GrantState::Live => 5,
        GrantState::Revoking | GrantState::Removed => 4,
        GrantState::Manual => 3,
        GrantState::Verified { .. } => 1,
        GrantState::Acknowledged { .. } => 0,
    };
    states.max_by_key(|s| rank(s))
}

/// Counts by state for a block's bottom title, shortened to fit `width`.
fn summary_spans<'a>(m: &Model, l: &LeaverRow, width: u16) -> Vec<Span<'a>> {
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
        ("live", "live", Role::Live),
        ("removing", "removing", Role::Removing),
        ("verified", "verified", Role::Verified),
        ("acknowledged", "ack", Role::Acknowledged),
        ("unconfirmed", "unconf", Role::Unconfirmed),
        ("failed", "failed", Role::Failed),
        ("manual", "manual", Role::Manual),
    ];
    let open = counts[0] + counts[1] + counts[4] + counts[5] + counts[6];
    let build = |short: bool, left: bool| {
        let mut spans = Vec::new();
        for (i, (long, brief, role)) in names.iter().enumerate() {
            if counts[i] > 0 {
                let name = if short { brief } else { long };
                let text = if short {
                    format!(" {} {name}", counts[i])
                } else {
                    format!(" {} {name} ", counts[i])
                };
                spans.push(Span::styled(text, t.style(*role)));
            }
        }
        if left {
            spans.push(Span::styled(format!(" {open} left "), t.style(Role::Muted)));
        } else if short {
            spans.push(Span::raw(" "));
        }
        spans
    };
    let fits = |spans: &Vec<Span>| spans.iter().map(|s| s.width()).sum::<usize>() <= width as usize;
    for (short, left) in [(false, true), (true, true), (true, false)] {
        let spans = build(short, left);
        if fits(&spans) {
            return spans;
        }
    }
    build(true, false)
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
    .title_bottom(Line::from(summary_spans(
        m,
        l,
        area.width.saturating_sub(2),
    )));
    let mut inner = b.inner(area);
    b.render(area, buf);
    // Revoke-all gauge, by phase.
    if l.revoking && !l.progress.is_empty() && inner.height > 3 {
        draw_gauge(m, l, Rect { height: 1, ..inner }, buf);
        inner.y += 1;
        inner.height -= 1;
    }
    // Columns: app, account, open, then the kinds present, by priority.
    // When they do not all fit, each app's kinds wrap under its row: every
    // kind with a count stays on screen.
    let present: Vec<GrantKind> = KIND_PRIORITY
        .into_iter()
        .filter(|k| l.grants.iter().any(|g| g.grant.kind == *k))
        .collect();
    let longest = m
        .connectors
        .iter()
        .map(|c| c.name.width())
        .max()
        .unwrap_or(8) as u16;
    let app_w: u16 = if inner.width >= 40 {
        (longest + 2).clamp(8, 18)
    } else {
        12.min(inner.width / 3).max(4)
    };
    let acct_w: u16 = if inner.width >= 60 { 14 } else { 11 };
    let open_w: u16 = 5;
    let kind_w = |k: GrantKind| kind_short(k).len().max(4) as u16 + 1;
    let table_w = app_w + acct_w + open_w + present.iter().map(|k| kind_w(*k)).sum::<u16>();
    let stacked = table_w > inner.width;
    if inner.height == 0 || inner.width < 8 {
        return;
    }
    let hdr = t.style(Role::Muted);
    let right = inner.x + inner.width;
    let put = |buf: &mut Buffer, x: u16, y: u16, text: &str, w: u16, style: Style| {
        if x < right && w > 0 {
            buf.set_stringn(x, y, text, w.min(right - x) as usize, style);
        }
    };
    put(buf, inner.x, inner.y, "app", app_w, hdr);
    put(buf, inner.x + app_w, inner.y, "account", acct_w, hdr);
    put(buf, inner.x + app_w + acct_w, inner.y, "open", open_w, hdr);
    if stacked {
        put(
            buf,
            inner.x + app_w + acct_w + open_w,
            inner.y,
            "kinds below",
            inner.width.saturating_sub(app_w + acct_w + open_w),
            hdr,
        );
    } else {
        let mut x = inner.x + app_w + acct_w + open_w;
        for k in &present {
            put(buf, x, inner.y, kind_short(*k), kind_w(*k), hdr);
            x += kind_w(*k);
        }
    }
    let view = m.app_view();
    // Per app: its grants, and (stacked) the lines of kind cells under it.
    let rows: Vec<(usize, Vec<&GrantRow>, Vec<CellLine>)> = view
        .iter()
        .map(|&ci| {
            let c = &m.connectors[ci];
            let grants: Vec<&GrantRow> = l
                .grants
                .iter()
                .filter(|g| g.grant.connector == c.id)
                .collect();
            let lines = if stacked {
                let cells: Vec<(String, Role)> = KIND_PRIORITY
                    .into_iter()
                    .filter_map(|k| {
                        let of: Vec<&GrantRow> = grants
                            .iter()
                            .copied()
                            .filter(|g| g.grant.kind == k)
                            .collect();
                        count_cell(&of).map(|(n, role)| (format!("{} {n}", kind_short(k)), role))
                    })
                    .collect();
                flow(cells, inner.width.saturating_sub(2) as usize)
            } else {
                Vec::new()
            };
            (ci, grants, lines)
        })
        .collect();
    let body_top = inner.y + 1;
    let body_h = inner.height.saturating_sub(1) as usize;
    let height = |i: usize| 1 + rows[i].2.len();
    // Keep the selected app's rows in view.
    let sel = m.matrix_sel.min(rows.len().saturating_sub(1));
    let mut first = 0;
    while first < sel && (first..=sel).map(height).sum::<usize>() > body_h {
        first += 1;
    }
    let mut y = body_top;
    let bottom = inner.y + inner.height;
    for (row, (ci, grants, lines)) in rows.iter().enumerate().skip(first) {
        if y >= bottom {
            break;
        }
        let c = &m.connectors[*ci];
        let h = (1 + lines.len() as u16).min(bottom - y);
        let rect = Rect {
            x: inner.x,
            y,
            width: inner.width,
            height: h,
        };
        let sel = row == m.matrix_sel;
        if sel && focused {
            buf.set_style(rect, t.style(Role::Selection));
        }
        let pointer = if sel { m.symbols.pointer() } else { " " };
        put(
            buf,
            inner.x,
            y,
            &format!(
                "{pointer}{}",
                ellipsize(
                    &c.name,
                    app_w.saturating_sub(2) as usize,
                    m.symbols.ellipsis_short()
                )
            ),
            app_w.saturating_sub(1),
            Style::default(),
        );
        let (acct, role) = match l.accounts.get(&c.id) {
            Some(a @ AccountStatus::Failed { .. }) => (a.label(), Role::Error),
            Some(a @ AccountStatus::Ambiguous { .. }) => (a.label(), Role::Warning),
            // The lookup said active; a verified suspension/deactivation
            // since then is what the operator needs to see.
            Some(AccountStatus::Found { active: true, .. }) if account_closed(l, &c.id) => {
                ("closed".to_string(), Role::Verified)
            }
            Some(a @ AccountStatus::Found { active: true, .. }) => (a.label(), Role::Text),
            Some(a) => (a.label(), Role::Muted),
            None => ("-".to_string(), Role::Muted),
        };
        let acct = if acct.width() >= acct_w as usize {
            match l.accounts.get(&c.id) {
                Some(AccountStatus::Failed { .. }) => "failed".to_string(),
                _ => ellipsize(
                    &acct,
                    acct_w.saturating_sub(1) as usize,
                    m.symbols.ellipsis_short(),
                ),
            }
        } else {
            acct
        };
        put(
            buf,
            inner.x + app_w,
            y,
            &acct,
            acct_w.saturating_sub(1),
            t.style(role),
        );
        let open: Vec<&GrantRow> = grants
            .iter()
            .copied()
            .filter(|g| !g.state.is_closed())
            .collect();
        let (open_text, open_role) = match count_cell(&open) {
            Some(cell) => cell,
            None if grants.is_empty() => (m.symbols.dot().to_string(), Role::Muted),
            None => ("0".to_string(), Role::Verified),
        };
        put(
            buf,
            inner.x + app_w + acct_w,
            y,
            &open_text,
            open_w - 1,
            t.style(open_role),
        );
        if stacked {
            for (i, line) in lines.iter().enumerate() {
                let ly = y + 1 + i as u16;
                if ly >= bottom {
                    break;
                }
                let mut x = inner.x + 2;
                for (text, role) in line {
                    put(buf, x, ly, text, text.width() as u16, t.style(*role));
                    x += text.width() as u16 + 2;
                }
            }
        } else {
            let mut x = inner.x + app_w + acct_w + open_w;
            for k in &present {
                let of: Vec<&GrantRow> = grants
                    .iter()
                    .copied()
                    .filter(|g| g.grant.kind == *k)
                    .collect();
                match count_cell(&of) {
                    Some((text, role)) => {
                        put(buf, x, y, &text, kind_w(*k) - 1, t.style(role));
                    }
                    None => put(buf, x, y, m.symbols.dot(), 1, t.style(Role::Muted)),
                }
                x += kind_w(*k);
            }
        }
        y += h;
    }
    let below = rows.len().saturating_sub(first) > 0
        && rows
            .iter()
            .enumerate()
            .skip(first)
            .map(|(i, _)| height(i))
            .sum::<usize>()
            > body_h;
    if (first > 0 || below) && inner.width > 12 {
        let text = format!(
            " {}{} ",
            if first > 0 { m.symbols.up() } else { "" },
            if below { m.symbols.down() } else { "" }
        );
        put(
            buf,
            right - text.width() as u16,
            inner.y,
            &text,
            text.width() as u16,
            hdr,
        );
    }
}

/// One line of the matrix's kind cells: each text and its style.
type CellLine = Vec<(String, Role)>;

/// Lays cells out left to right, two columns apart, in lines of `width`.
fn flow(cells: CellLine, width: usize) -> Vec<CellLine> {
    let mut lines: Vec<CellLine> = Vec::new();
    let mut used = 0;
    for (text, role) in cells {
        let w = text.width();
        match lines.last_mut() {
            Some(line) if used + 2 + w <= width => {
                line.push((text, role));
                used += 2 + w;
            }
            _ => {
                used = w;
                lines.push(vec![(text, role)]);
            }
        }
    }
    lines
}

/// A count with the letter of the state that most needs the eye (`3F`:
/// three grants, at least one failed), so that states read without
/// colour. None when there are no grants.
fn count_cell(grants: &[&GrantRow]) -> Option<(String, Role)> {
    let s = dominant_state(grants.iter().map(|g| &g.state))?;
    Some((
        format!("{}{}", grants.len(), state_letter(s)),
        state_role(s),
    ))
}

/// The letter of a state in the matrix (the help screen has the legend).
pub fn state_letter(s: &GrantState) -> &'static str {
    match s {
        GrantState::Live => "L",
        GrantState::Revoking | GrantState::Removed => "R",
        GrantState::Verified { .. } => "V",
        GrantState::Unconfirmed { .. } => "U",
        GrantState::Failed { .. } => "F",
        GrantState::Manual => "M",
        GrantState::Acknowledged { .. } => "A",
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
        " phase {}/3 {}: {done}/{total} done ",
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
        Some(l) => b.title_bottom(Line::from(summary_spans(
            m,
            l,
            area.width.saturating_sub(2),
        ))),
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
    // The selected grant in full, under the table.
    let attention = m
        .selected_grant()
        .is_some_and(|g| g.state.needs_attention());
    let detail_h = if inner.height >= 12 && attention {
        3
    } else if inner.height >= 9 {
        2
    } else if inner.height >= 5 {
        1
    } else {
        0
    };
    if detail_h > 0 {
        let r = Rect {
            y: inner.y + inner.height - detail_h,
            height: detail_h,
            ..inner
        };
        draw_grant_status(m, r, buf);
        inner.height -= detail_h;
    }
    let w = inner.width;
    let c = grant_columns(w);
    let hdr = t.style(Role::Muted);
    let mut x = inner.x + c.mark;
    for (text, width) in [
        ("grant", c.label),
        ("kind", c.kind),
        ("risk", c.risk),
        ("state", c.state),
        ("since", c.since),
        ("details", c.details),
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
    if m.grant_view.len() > rows {
        // Rows out of sight: where the view is, and which way there is more.
        let text = format!(
            " {}{} {}-{}/{} ",
            if offset > 0 { m.symbols.up() } else { "" },
            if end < m.grant_view.len() {
                m.symbols.down()
            } else {
                ""
            },
            offset + 1,
            end,
            m.grant_view.len()
        );
        let w = text.width() as u16;
        if w < inner.width {
            buf.set_stringn(
                inner.x + inner.width - w,
                inner.y,
                text,
                w as usize,
                t.style(Role::Accent),
            );
        }
    }
    let short_kind = c.kind < 13;
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
        let mut x = inner.x + c.mark;
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
        cell(buf, &mut x, &g.grant.label, c.label, base);
        let kind = if short_kind {
            kind_short(g.grant.kind)
        } else {
            g.grant.kind.as_str()
        };
        cell(buf, &mut x, kind, c.kind, base);
        cell(buf, &mut x, g.grant.risk.as_str(), c.risk, base);
        cell(buf, &mut x, &state_text(m, g), c.state, base);
        let since = g.since_state.map(hhmmss).unwrap_or_default();
        cell(buf, &mut x, &since, c.since, base);
        cell(buf, &mut x, &grant_details(g), c.details, base);
        if offset + row == m.grant_sel && focused {
            buf.set_style(rect, t.style(Role::Selection));
        }
    }
    if m.grant_view.is_empty() {
        let ambiguous = match l.accounts.get(app) {
            Some(AccountStatus::Ambiguous { candidates }) => Some(candidates.len()),
            _ => None,
        };
        let text = if let Some(n) = ambiguous {
            format!("{n} accounts match this leaver: Enter to see them")
        } else if m.filter_grants.is_empty() {
            "no grants in this app".to_string()
        } else {
            "no grant matches the filter".to_string()
        };
        buf.set_stringn(
            inner.x + 2,
            inner.y + 1,
            text,
            (inner.width as usize).saturating_sub(2),
            t.style(if ambiguous.is_some() {
                Role::Warning
            } else {
                Role::Muted
            }),
        );
    }
}

/// Column widths of the grant table for an inner width `w`: the label gets
/// what is left once the state stays readable; kind, risk, since and
/// details come and go with the room there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantColumns {
    pub mark: u16,
    pub label: u16,
    pub kind: u16,
    pub risk: u16,
    pub state: u16,
    pub since: u16,
    pub details: u16,
}

pub fn grant_columns(w: u16) -> GrantColumns {
    let mark = 2;
    // "verified 10:02:03", "acknowledged", "removing ⠋" fit in 18.
    let state = 18;
    let kind = if w >= 120 {
        13
    } else if w >= 50 {
        7
    } else {
        0
    };
    let risk = if w >= 60 { 9 } else { 0 };
    let since = if w >= 110 { 10 } else { 0 };
    let flex = w.saturating_sub(mark + state + kind + risk + since);
    // Details only when the label keeps at least 34 columns.
    let (label, details) = if flex >= 34 + 24 {
        let label = (flex / 2).max(34);
        (label, flex - label)
    } else {
        (flex, 0)
    };
    GrantColumns {
        mark,
        label,
        kind,
        risk,
        state,
        since,
        details,
    }
}

/// The state as the table shows it (the reason goes to the details).
fn state_text(m: &Model, g: &GrantRow) -> String {
    match &g.state {
        GrantState::Revoking | GrantState::Removed => {
            format!("removing {}", m.symbols.spinner(m.spinner))
        }
        GrantState::Verified { at } => format!("verified {}", hhmmss(*at)),
        GrantState::Manual if g.grant.is_manual() => "manual step".to_string(),
        other => other.name().to_string(),
    }
}

/// Details: for a failed or unconfirmed grant the reason and the API's
/// answer come first.
fn grant_details(g: &GrantRow) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(r) = g.state.reason()
        && matches!(
            g.state,
            GrantState::Failed { .. } | GrantState::Unconfirmed { .. }
        )
    {
        parts.push(r);
    }
    if let (GrantState::Failed { .. } | GrantState::Unconfirmed { .. }, Some(a)) =
        (&g.state, &g.answer)
    {
        parts.push(a);
    }
    if !g.grant.details.is_empty() {
        parts.push(&g.grant.details);
    }
    parts.join(" - ")
}

/// A failure reason without the manual step the engine appended to it.
fn reason_of(g: &GrantRow) -> Option<&str> {
    match &g.state {
        GrantState::Failed { reason } | GrantState::Unconfirmed { reason } => Some(
            reason
                .split_once("; manual step: ")
                .map_or(reason.as_str(), |(r, _)| r),
        ),
        _ => None,
    }
}

/// What to do about a grant that needs a person: the manual instructions,
/// the step the engine named for a refused revoke, or else doing it in the
/// app's admin console.
fn manual_step(m: &Model, g: &GrantRow) -> Option<String> {
    if let GrantState::Failed { reason } | GrantState::Unconfirmed { reason } = &g.state
        && let Some((_, step)) = reason.split_once("; manual step: ")
    {
        return Some(step.to_string());
    }
    match (&g.grant.revocation, &g.state) {
        (crate::model::Revocation::Manual { instructions }, _) => Some(instructions.clone()),
        (_, GrantState::Failed { .. }) => Some(format!(
            "retry with r, or remove it in the {} admin console and refresh (v)",
            m.connector_name(&g.grant.connector)
        )),
        (_, GrantState::Unconfirmed { .. }) => Some(format!(
            "still listed after the revoke: check it in the {} admin console, then retry with r",
            m.connector_name(&g.grant.connector)
        )),
        _ => None,
    }
}

/// Word-wraps `text` to `width` columns (words longer than a line are cut).
pub fn wrap_text(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        loop {
            let need = if cur.is_empty() { 0 } else { 1 } + word.width();
            if cur.width() + need <= width {
                if !cur.is_empty() {
                    cur.push(' ');
                }
                cur.push_str(&word);
                break;
            }
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
                continue;
            }
            let head = truncate(&word, width).to_string();
            let rest = word[head.len()..].to_string();
            lines.push(head);
            if rest.is_empty() {
                break;
            }
            word = rest;
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

/// One or two lines about the selected grant: its full label, then the
/// reason, manual step or details.
fn draw_grant_status(m: &Model, area: Rect, buf: &mut Buffer) {
    let t = &m.theme;
    let Some(g) = m.selected_grant() else {
        return;
    };
    let role = state_role(&g.state);
    let mut first = vec![
        Span::styled(format!("{} ", m.symbols.pointer()), t.style(Role::Accent)),
        Span::styled(g.grant.label.clone(), t.style(Role::Accent)),
        Span::styled(
            format!(
                " {} {} {} {} risk {} ",
                m.symbols.dot(),
                g.grant.kind.as_str(),
                m.symbols.dot(),
                g.grant.risk.as_str(),
                m.symbols.dot()
            ),
            t.style(Role::Muted),
        ),
        Span::styled(state_text(m, g), t.style(role)),
    ];
    let reason = match &g.state {
        GrantState::Acknowledged { note: Some(n), .. } => Some(format!("note: {n}")),
        _ => reason_of(g).map(str::to_string),
    };
    let step = manual_step(m, g);
    let second: Vec<Span> = match (&reason, &step) {
        (Some(r), Some(step)) if area.height < 3 => vec![
            Span::styled(r.clone(), t.style(role)),
            Span::styled(format!(" {} ", m.symbols.dot()), t.style(Role::Muted)),
            Span::styled(format!("manual: {step}"), t.style(Role::Manual)),
        ],
        (Some(r), _) => vec![Span::styled(r.clone(), t.style(role))],
        (None, Some(step)) => vec![Span::styled(
            format!("manual: {step}"),
            t.style(Role::Manual),
        )],
        (None, None) => vec![Span::styled(g.grant.details.clone(), t.style(Role::Text))],
    };
    if area.height >= 2 {
        buf.set_line(area.x, area.y, &Line::from(first), area.width);
        // The reason, then the manual step, wrapped over the rows there
        // are; cut at a word with an ellipsis (Enter shows it all).
        let mut parts: Vec<(String, Role)> = Vec::new();
        if let Some(r) = &reason {
            parts.push((r.clone(), role));
        }
        if let Some(step) = &step {
            parts.push((format!("manual: {step}"), Role::Manual));
        }
        if parts.is_empty() {
            parts.push((g.grant.details.clone(), Role::Text));
        }
        let width = area.width.saturating_sub(2) as usize;
        let mut rows: Vec<(String, Role)> = parts
            .iter()
            .flat_map(|(text, role)| {
                wrap_text(text, width)
                    .into_iter()
                    .map(move |line| (line, *role))
            })
            .collect();
        let avail = (area.height - 1) as usize;
        if rows.len() > avail {
            let next = rows[avail].0.clone();
            rows.truncate(avail);
            if let Some(last) = rows.last_mut() {
                last.0 = ellipsize(
                    &format!("{} {next}", last.0),
                    width,
                    m.symbols.ellipsis_short(),
                );
            }
        }
        for (i, (text, role)) in rows.into_iter().enumerate() {
            let line = Line::from(vec![Span::raw("  "), Span::styled(text, t.style(role))]);
            buf.set_line(area.x, area.y + 1 + i as u16, &line, area.width);
        }
    } else {
        first.push(Span::styled(
            format!(" {} ", m.symbols.dot()),
            t.style(Role::Muted),
        ));
        first.extend(second);
        buf.set_line(area.x, area.y, &Line::from(first), area.width);
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
        format!(" Activity (paused {} back; G follows) ", m.activity_back)
    } else {
        " Activity ".to_string()
    };
    let b = block(m, title, focused);
    let inner = b.inner(area);
    b.render(area, buf);
    let rows = inner.height as usize;
    if rows == 0 || inner.width < 12 {
        return;
    }
    // Newest at the bottom; long lines wrap under their text (never cut).
    let end = m.activity.len().saturating_sub(m.activity_back);
    let text_w = inner.width.saturating_sub(9) as usize;
    let mut shown: Vec<Line> = Vec::new();
    for line in m.activity.range(..end).rev() {
        if shown.len() >= rows {
            break;
        }
        let role = match line.level {
            Level::Info => Role::Text,
            Level::Good => Role::Verified,
            Level::Warn => Role::Warning,
            Level::Error => Role::Error,
        };
        let parts = wrap_text(&line.text, text_w);
        for (i, part) in parts.into_iter().enumerate().rev() {
            let head = if i == 0 {
                Span::styled(format!("{} ", hhmmss(line.at)), t.style(Role::Muted))
            } else {
                Span::raw("         ")
            };
            shown.push(Line::from(vec![head, Span::styled(part, t.style(role))]));
        }
    }
    shown.truncate(rows);
    for (i, l) in shown.into_iter().rev().enumerate() {
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
            if rw && !m.picked.is_empty() {
                h.push(("B", "batch"));
            } else if rw {
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
                h.push(("Enter", "details/done"));
                h.push(("R", "all"));
            } else {
                h.push(("Enter", "details"));
            }
            h.push(("o", "open only"));
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
        // Cut at a word with an ellipsis; the activity pane has it whole.
        let text = ellipsize(text, area.width as usize, m.symbols.ellipsis_short());
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

#[allow(clippy::too_many_arguments)]
fn draw_login(
    m: &Model,
    app: &str,
    prompt: Option<&LoginPrompt>,
    pasted: &str,
    submitted: bool,
    error: Option<&str>,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = &m.theme;
    let r = popup(area, 78, 15);
    Clear.render(r, buf);
    let b = block(
        m,
        Span::styled(format!(" Sign in to {app} "), t.style(Role::Accent)),
        true,
    );
    let inner = b.inner(r);
    b.render(r, buf);
    let cursor = if m.symbols.ascii { "_" } else { "▏" };
    let mut lines: Vec<Line> = Vec::new();
    match prompt {
        None if error.is_none() => lines.push(Line::from(format!(
            "{} asking the authorization server{}",
            m.symbols.spinner(m.spinner),
            m.symbols.ellipsis()
        ))),
        None => {}
        Some(LoginPrompt::Device {
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_at,
        }) => {
            lines.push(Line::from("On any device with a browser, open"));
            lines.push(Line::from(Span::styled(
                format!("  {verification_uri}"),
                t.style(Role::Accent),
            )));
            lines.push(Line::from(vec![
                Span::raw("and enter the code  "),
                Span::styled(user_code.clone(), t.style(Role::Danger)),
            ]));
            if let Some(c) = verification_uri_complete {
                lines.push(Line::from(Span::styled(
                    "(or open this address, which has the code filled in:)",
                    t.style(Role::Muted),
                )));
                lines.push(Line::from(Span::styled(
                    format!("  {c}"),
                    t.style(Role::Accent),
                )));
            }
            if error.is_none() {
                let left = (*expires_at - m.now).num_seconds().max(0);
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled(
                    format!(
                        "{} waiting for approval (code valid {}:{:02} more)",
                        m.symbols.spinner(m.spinner),
                        left / 60,
                        left % 60
                    ),
                    t.style(Role::Muted),
                )));
            }
        }
        Some(LoginPrompt::Code {
            url,
            redirect_uri,
            browser_opened,
        }) => {
            lines.push(Line::from(if *browser_opened {
                "A browser was opened. If it did not, open this URL on any machine:"
            } else {
                "Open this URL in a browser on any machine:"
            }));
            lines.push(Line::from(Span::styled(url.clone(), t.style(Role::Accent))));
            lines.push(Line::from(format!(
                "Approve. If the browser then fails to load {redirect_uri}, copy its whole address and paste it here:"
            )));
            lines.push(Line::from(vec![
                Span::styled("> ", t.style(Role::Accent)),
                Span::raw(pasted.to_string()),
                Span::styled(
                    if submitted || error.is_some() {
                        ""
                    } else {
                        cursor
                    },
                    t.style(Role::Accent),
                ),
            ]));
            if submitted && error.is_none() {
                lines.push(Line::from(Span::styled(
                    format!("{} exchanging the code", m.symbols.spinner(m.spinner)),
                    t.style(Role::Muted),
                )));
            }
        }
    }
    if let Some(e) = error {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            format!("Sign-in failed: {e}"),
            t.style(Role::Error),
        )));
    }
    let body = Rect {
        height: inner.height.saturating_sub(1),
        ..inner
    };
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .render(body, buf);
    let keys = if error.is_some() {
        "Esc close"
    } else if matches!(prompt, Some(LoginPrompt::Code { .. })) && !submitted {
        "Enter send the pasted address   Esc cancel"
    } else {
        "Esc cancel"
    };
    buf.set_stringn(
        inner.x,
        inner.y + inner.height.saturating_sub(1),
        keys,
        inner.width as usize,
        t.style(Role::Muted),
    );
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
        Dialog::Batch {
            emails,
            plan,
            typed,
            error,
        } => {
            let n = emails.len();
            let w = area.width.saturating_sub(4).min(76);
            let text_w = w.saturating_sub(2) as usize;
            let mut lines: Vec<Line> = Vec::new();
            match (plan, error) {
                (_, Some(e)) => {
                    for part in wrap_text(&format!("cannot run the batch: {e}"), text_w) {
                        lines.push(Line::from(Span::styled(part, t.style(Role::Error))));
                    }
                }
                (None, None) => lines.push(Line::from(format!(
                    "Discovering and planning {n} leaver(s) {} (nothing is changed)",
                    m.symbols.spinner(m.spinner)
                ))),
                (Some(p), None) => {
                    lines.push(Line::from(format!(
                        "Dry run for {n} leaver(s): steps per app and kind"
                    )));
                    let total: usize = p.totals.iter().map(|(_, _, k)| k).sum();
                    let mut row = String::new();
                    for (app, kind, k) in &p.totals {
                        let cell = format!("{app} {kind} {k}");
                        if !row.is_empty() && row.len() + cell.len() + 3 > text_w {
                            lines.push(Line::from(format!("  {row}")));
                            row.clear();
                        }
                        if !row.is_empty() {
                            row.push_str(&format!(" {} ", m.symbols.dot()));
                        }
                        row.push_str(&cell);
                    }
                    if !row.is_empty() {
                        lines.push(Line::from(format!("  {row}")));
                    }
                    lines.push(Line::from(format!("  total {total} step(s)")));
                    for r in &p.reasons {
                        for part in wrap_text(&format!("over the cap: {r}"), text_w) {
                            lines.push(Line::from(Span::styled(part, t.style(Role::Warning))));
                        }
                    }
                    lines.push(Line::from(""));
                    lines.push(Line::from(format!(
                        "Type {n} (the number of leavers) to revoke them all:"
                    )));
                    lines.push(Line::from(vec![
                        Span::styled("> ", t.style(Role::Accent)),
                        Span::raw(typed.as_str()),
                        Span::styled(
                            if m.symbols.ascii { "_" } else { "▏" },
                            t.style(Role::Accent),
                        ),
                    ]));
                }
            }
            lines.push(Line::from(Span::styled(
                "Enter confirm   Esc cancel",
                t.style(Role::Muted),
            )));
            let h = (lines.len() as u16 + 2).min(area.height);
            let r = popup(area, w, h);
            Clear.render(r, buf);
            let b = block(
                m,
                Span::styled(" Revoke a batch ", t.style(Role::Danger)),
                true,
            )
            .border_style(t.style(Role::Danger));
            let inner = b.inner(r);
            b.render(r, buf);
            Paragraph::new(lines).render(inner, buf);
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
            let discovered = m
                .leavers
                .iter()
                .any(|l| l.email.eq_ignore_ascii_case(email) && l.discovered);
            let lines = vec![
                Line::from(if discovered {
                    format!("Cut all access of {email}: {count} grant(s), in phases.")
                } else {
                    format!("Cut all access of {email}: still discovering ({count} so far).")
                }),
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
        Dialog::Login {
            app,
            prompt,
            pasted,
            submitted,
            error,
        } => draw_login(
            m,
            app,
            prompt.as_ref(),
            pasted,
            *submitted,
            error.as_deref(),
            area,
            buf,
        ),
        Dialog::GrantDetail { key, scroll } => {
            let Some(g) = m.selected().and_then(|l| l.grant(key)) else {
                return;
            };
            let w = area.width.min(84);
            let value_w = w.saturating_sub(2 + 9) as usize;
            let mut fields: Vec<(&str, String, Role)> = vec![
                ("grant", g.grant.label.clone(), Role::Accent),
                (
                    "app",
                    format!("{} ({})", m.connector_name(&g.grant.connector), g.key),
                    Role::Text,
                ),
                (
                    "kind",
                    format!("{}, {} risk", g.grant.kind.as_str(), g.grant.risk.as_str()),
                    Role::Text,
                ),
                (
                    "state",
                    match g.since_state {
                        Some(at) if !matches!(g.state, GrantState::Verified { .. }) => {
                            format!("{} since {}", state_text(m, g), hhmmss(at))
                        }
                        _ => state_text(m, g),
                    },
                    state_role(&g.state),
                ),
            ];
            if let Some(r) = reason_of(g) {
                fields.push(("reason", r.to_string(), state_role(&g.state)));
            }
            if let GrantState::Acknowledged { note: Some(n), .. } = &g.state {
                fields.push(("note", n.clone(), Role::Text));
            }
            if let Some(a) = &g.answer {
                fields.push(("API said", a.clone(), Role::Text));
            }
            if !g.grant.details.is_empty() {
                fields.push(("details", g.grant.details.clone(), Role::Text));
            }
            if let Some(s) = &g.grant.since {
                fields.push(("granted", s.clone(), Role::Text));
            }
            if let Some(step) = manual_step(m, g) {
                fields.push(("manual", step, Role::Manual));
            }
            let mut lines = Vec::new();
            for (k, v, role) in fields {
                for (i, part) in wrap_text(&v, value_w).into_iter().enumerate() {
                    lines.push(Line::from(vec![
                        Span::styled(
                            format!("{:<9}", if i == 0 { k } else { "" }),
                            t.style(Role::Muted),
                        ),
                        Span::styled(part, t.style(role)),
                    ]));
                }
            }
            scroll_popup(
                m,
                area,
                buf,
                w,
                Span::styled(" Grant ", t.style(Role::Accent)),
                lines,
                *scroll,
                "Esc close",
            );
        }
        Dialog::Quit { quit_focused } => {
            let mut text = Vec::new();
            for l in m.in_flight().iter().take(3) {
                let removing = l.grants.iter().filter(|g| g.state.is_removing()).count();
                text.push(format!(
                    "A revoke is in flight for {} ({removing} removing).",
                    l.email
                ));
            }
            text.push(String::new());
            text.push(
                "Quitting stops it here. What was requested is in the evidence ledger, and the case resumes on the next start of the console.".into(),
            );
            let w = area.width.min(66);
            let mut lines = Vec::new();
            for p in text {
                for part in wrap_text(&p, w.saturating_sub(2) as usize) {
                    lines.push(Line::from(part));
                }
            }
            let r = popup(area, w, lines.len() as u16 + 4);
            Clear.render(r, buf);
            let b = block(
                m,
                Span::styled(" Quit while a revoke runs? ", t.style(Role::Danger)),
                true,
            )
            .border_style(t.style(Role::Danger));
            let inner = b.inner(r);
            b.render(r, buf);
            let body_h = inner.height.saturating_sub(2) as usize;
            for (i, l) in lines.iter().take(body_h).enumerate() {
                buf.set_line(inner.x, inner.y + i as u16, l, inner.width);
            }
            if inner.height >= 1 {
                let by = inner.y + inner.height - 1;
                let (stay, quit) = (" Stay ", " Quit ");
                let (stay_style, quit_style) = if *quit_focused {
                    (t.style(Role::Text), t.style(Role::Danger))
                } else {
                    (t.style(Role::Selection), t.style(Role::Muted))
                };
                let line = Line::from(vec![
                    Span::styled("[", t.style(Role::Muted)),
                    Span::styled(stay, stay_style),
                    Span::styled("]   [", t.style(Role::Muted)),
                    Span::styled(quit, quit_style),
                    Span::styled("]", t.style(Role::Muted)),
                ]);
                let bx = inner.x + inner.width.saturating_sub(line.width() as u16) / 2;
                buf.set_line(bx, by, &line, inner.width);
            }
        }
        Dialog::Notice {
            title,
            text,
            scroll,
        } => {
            let w = area.width.min(76);
            let mut lines = Vec::new();
            for (i, p) in text.iter().enumerate() {
                let role = if i == 1 { Role::Accent } else { Role::Text };
                for part in wrap_text(p, w.saturating_sub(2) as usize) {
                    lines.push(Line::from(Span::styled(part, t.style(role))));
                }
            }
            scroll_popup(
                m,
                area,
                buf,
                w,
                Span::styled(format!(" {title} "), t.style(Role::Verified)),
                lines,
                *scroll,
                "Enter/Esc close",
            );
        }
        Dialog::Accounts {
            email,
            app,
            candidates,
            selected,
        } => {
            let shown = candidates.len().min(6);
            let r = popup(area, 78, 10 + 2 * shown as u16);
            Clear.render(r, buf);
            let b = block(
                m,
                Span::styled(
                    format!(
                        " {} accounts match in {} ",
                        candidates.len(),
                        m.connector_name(app)
                    ),
                    t.style(Role::Warning),
                ),
                true,
            );
            let inner = b.inner(r);
            b.render(r, buf);
            let mut lines = vec![Line::from(format!("{email} matches several accounts:"))];
            // Keep the selected one in view.
            let first = selected.saturating_sub(shown.saturating_sub(1));
            for (i, c) in candidates.iter().enumerate().skip(first).take(shown) {
                let sel = i == *selected;
                let style = if sel {
                    t.style(Role::Selection)
                } else {
                    t.style(Role::Text)
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!(
                            "{} {}",
                            if sel { m.symbols.pointer() } else { " " },
                            c.login
                        ),
                        style,
                    ),
                    Span::styled(
                        format!("  {}", if c.active { "active" } else { "inactive" }),
                        t.style(if c.active { Role::Text } else { Role::Muted }),
                    ),
                ]));
                let last = c
                    .last_login
                    .as_deref()
                    .map(|l| truncate(l, 16).replace('T', " "))
                    .unwrap_or_else(|| "never".into());
                lines.push(Line::from(Span::styled(
                    format!(
                        "    {} {} id {} {} last login {last}",
                        if c.display_name.is_empty() {
                            "(no name)"
                        } else {
                            &c.display_name
                        },
                        m.symbols.dot(),
                        c.id,
                        m.symbols.dot()
                    ),
                    t.style(Role::Muted),
                )));
            }
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                format!(
                    "offboard never guesses: nothing in {} is read or revoked for this leaver until you pick the leaver's account; the pick is recorded in the ledger.",
                    m.connector_name(app)
                ),
                t.style(Role::Warning),
            )));
            Paragraph::new(lines).wrap(Wrap { trim: false }).render(
                Rect {
                    height: inner.height.saturating_sub(1),
                    ..inner
                },
                buf,
            );
            buf.set_stringn(
                inner.x,
                inner.y + inner.height.saturating_sub(1),
                if m.read_only {
                    "j/k move   Esc close"
                } else {
                    "j/k move   Enter pick this account   Esc close"
                },
                inner.width as usize,
                t.style(Role::Muted),
            );
        }
        Dialog::Help { scroll } => {
            let mut rows: Vec<(&str, &str)> = vec![
                ("j/k, arrows", "move (PgUp/PgDn, g/G: page, ends)"),
                ("Tab", "switch pane"),
                ("Enter", "drill in"),
                ("Esc", "go back, clear filter"),
                ("/", "filter the current list"),
                ("/a|b  /!a", "either a or b; all but a"),
                ("o (grants)", "open grants only, o again: all"),
                (":add EMAIL", "queue a leaver"),
                (":app NAME", "open an app's grants"),
                (":theme NAME", "switch theme"),
                (":export", "write the evidence report"),
                (":login APP", "sign in to an app"),
                (":auto on|off", "run the exit-time policy while open"),
                (":handover EMAIL", "hand the leaver's Drive/Calendar to"),
                (":takeover", "team mode: take the leaver from its host"),
                (":quit, q", "quit (asks while a revoke runs)"),
                ("v, Ctrl-R", "refresh now"),
            ];
            if !m.read_only {
                rows.extend([
                    ("Space", "mark a grant; in the queue: pick"),
                    ("B", "revoke the picked leavers as a batch"),
                    ("r", "revoke marked/selected (retry failed)"),
                    ("R", "revoke everything (type the email)"),
                    ("Enter (manual)", "mark a manual step done"),
                ]);
            }
            let mut lines: Vec<Line> = rows
                .into_iter()
                .map(|(k, v)| {
                    Line::from(vec![
                        Span::styled(format!("{k:<16}"), t.style(Role::Accent)),
                        Span::raw(v),
                    ])
                })
                .collect();
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                "States: a count's letter is its most urgent state",
                t.style(Role::Accent),
            )));
            let at = m.now;
            for (state, what) in [
                (
                    GrantState::Failed {
                        reason: String::new(),
                    },
                    "failed: the API refused; see the reason",
                ),
                (
                    GrantState::Unconfirmed {
                        reason: String::new(),
                    },
                    "unconfirmed: still listed past the deadline",
                ),
                (GrantState::Live, "live: access the leaver still has"),
                (
                    GrantState::Removed,
                    "removing: asked, not yet confirmed gone",
                ),
                (GrantState::Manual, "manual: a person must do it (Enter)"),
                (
                    GrantState::Verified { at },
                    "verified: a fresh read no longer lists it",
                ),
                (
                    GrantState::Acknowledged { at, note: None },
                    "acknowledged: done by hand, or unlistable",
                ),
            ] {
                let (name, what) = what.split_once(": ").unwrap_or((what, ""));
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("  {}  {name:<13}", state_letter(&state)),
                        t.style(state_role(&state)),
                    ),
                    Span::raw(what),
                ]));
            }
            lines.push(Line::from(""));
            lines.push(Line::from(Span::styled(
                "Kinds (matrix columns)",
                t.style(Role::Accent),
            )));
            for k in KIND_PRIORITY {
                lines.push(Line::from(vec![
                    Span::styled(format!("  {:<8}", kind_short(k)), t.style(Role::Accent)),
                    Span::raw(kind_help(k)),
                ]));
            }
            scroll_popup(
                m,
                area,
                buf,
                area.width.min(66),
                Span::raw(" Help "),
                lines,
                *scroll,
                "Esc close",
            );
        }
    }
}

/// What a kind abbreviation stands for (help screen).
fn kind_help(k: GrantKind) -> &'static str {
    match k {
        GrantKind::Account => "account: the login itself (suspended last)",
        GrantKind::Session => "session: signed-in browsers and devices",
        GrantKind::OauthGrant => "oauth_grant: third-party app tokens",
        GrantKind::AppPassword => "app_password: passwords for old mail clients",
        GrantKind::BackupCodes => "backup_codes: 2-step verification codes",
        GrantKind::ApiKey => "api_key: personal access and API tokens",
        GrantKind::License => "license: paid seats",
        GrantKind::Group => "group: memberships",
        GrantKind::AdminRole => "admin_role: administrator roles",
        GrantKind::Device => "device: managed phones and laptops",
        GrantKind::Delegation => "delegation: mail forwarding, delegates",
        GrantKind::OwnedApp => "owned_app: bots, connected apps they own",
    }
}

/// A popup of `lines` at most `w` wide and as tall as they need (up to the
/// screen), scrolled down by `scroll` lines, with the keys and, when it
/// scrolls, where it is on the last line. Tells `update` how far it can
/// scroll.
#[allow(clippy::too_many_arguments)]
fn scroll_popup(
    m: &Model,
    area: Rect,
    buf: &mut Buffer,
    w: u16,
    title: Span,
    lines: Vec<Line>,
    scroll: u16,
    keys: &str,
) {
    let t = &m.theme;
    let r = popup(area, w, lines.len() as u16 + 3);
    Clear.render(r, buf);
    let b = block(m, title, true);
    let inner = b.inner(r);
    b.render(r, buf);
    if inner.height == 0 {
        return;
    }
    let body_h = inner.height - 1;
    let total = lines.len() as u16;
    let max = total.saturating_sub(body_h);
    m.popup_max_scroll.set(max);
    let scroll = scroll.min(max);
    for (i, line) in lines
        .iter()
        .skip(scroll as usize)
        .take(body_h as usize)
        .enumerate()
    {
        buf.set_line(inner.x, inner.y + i as u16, line, inner.width);
    }
    let keys = if max > 0 {
        format!(
            "{keys}   j/k PgUp/PgDn {}{} {}-{}/{}",
            if scroll > 0 { m.symbols.up() } else { "" },
            if scroll < max { m.symbols.down() } else { "" },
            scroll + 1,
            (scroll + body_h).min(total),
            total
        )
    } else {
        keys.to_string()
    };
    buf.set_stringn(
        inner.x,
        inner.y + inner.height - 1,
        keys,
        inner.width as usize,
        t.style(Role::Muted),
    );
}

/// Whether this app's account-closing step (suspend, deactivate) has been
/// verified by a fresh read.
fn account_closed(l: &LeaverRow, connector: &str) -> bool {
    l.grants.iter().any(|g| {
        g.grant.connector == connector
            && g.grant.kind == crate::model::GrantKind::Account
            && g.grant.phase() == crate::model::Phase::CloseAccount
            && matches!(g.state, GrantState::Verified { .. })
    })
}
