//! Pure update tests for every key, and rendering tests on TestBackend that
//! check text and styles.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Modifier;

use crate::connector::{HealthState, Lookup};
use crate::engine::Event;
use crate::model::Account;
use crate::model::{Grant, GrantKind, GrantState, Revocation, Risk};

use super::action::{Action, Effect};
use super::model::*;
use super::theme::{Role, ThemeSet};
use super::update::update;
use super::view;

fn grant(connector: &str, id: &str, kind: GrantKind, label: &str) -> Grant {
    Grant {
        connector: connector.into(),
        id: id.into(),
        kind,
        label: label.into(),
        details: format!("details of {label}"),
        risk: Risk::High,
        revocation: Revocation::Api,
        since: None,
        phase: None,
        after: Vec::new(),
    }
}

fn row(g: Grant, state: GrantState) -> GrantRow {
    GrantRow {
        key: g.key(),
        grant: g,
        state,
        since_state: Some(t0()),
        answer: None,
    }
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

fn model_with(read_only: bool, theme: &str) -> Model {
    let (mut m, _) = Model::new(
        "ops@example.com",
        read_only,
        false,
        ThemeSet::builtin(false),
        theme,
    );
    m.now = t0();
    m.connectors = vec![
        ConnectorRow::new("google", "Google Workspace", Duration::from_secs(5)),
        ConnectorRow::new("slack", "Slack", Duration::from_secs(1)),
    ];
    m.connectors[0].health = HealthState::Ok;
    m.connectors[1].health = HealthState::AuthError;
    let mut dana = LeaverRow::new("dana.whitfield@example.com");
    dana.discovered = true;
    dana.grants = vec![row(
        grant("google", "token:a", GrantKind::OauthGrant, "Zoom"),
        GrantState::Live,
    )];
    let mut marcus = LeaverRow::new("marcus.reyes@example.com");
    marcus.discovered = true;
    // A revoke of his is running (Thunderbird is being removed).
    marcus.revoking = true;
    marcus.name = Some("Marcus Reyes".into());
    let mut manual = grant(
        "slack",
        "manual:1",
        GrantKind::OwnedApp,
        "Transfer bot ownership",
    );
    manual.revocation = Revocation::Manual {
        instructions: "Reassign the bot in Slack admin".into(),
    };
    marcus.grants = vec![
        row(
            grant("google", "signout", GrantKind::Session, "Web sessions"),
            GrantState::Live,
        ),
        row(
            grant("google", "token:x", GrantKind::OauthGrant, "Calendly"),
            GrantState::Live,
        ),
        row(
            grant("google", "asp:1", GrantKind::AppPassword, "Thunderbird"),
            GrantState::Removed,
        ),
        row(
            grant("google", "role:9", GrantKind::AdminRole, "Groups Admin"),
            GrantState::Verified { at: t0() },
        ),
        row(
            grant("google", "token:f", GrantKind::OauthGrant, "Broken"),
            GrantState::Failed {
                reason: "HTTP 500".into(),
            },
        ),
        row(manual, GrantState::Manual),
    ];
    m.leavers = vec![dana, marcus];
    m.recompute_grants();
    m
}

fn key(c: KeyCode) -> Action {
    Action::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn ch(c: char) -> Action {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn typed(m: &mut Model, s: &str) -> Vec<Effect> {
    s.chars().flat_map(|c| update(m, ch(c))).collect()
}

/// Selects Marcus, drills into Google, and moves past the failed grant
/// (listed first) to Web sessions.
fn in_google(m: &mut Model) {
    update(m, ch('j'));
    update(m, key(KeyCode::Enter));
    assert_eq!(m.focus, Focus::Matrix);
    update(m, key(KeyCode::Enter));
    assert_eq!(m.screen, Screen::Drill("google".into()));
    assert_eq!(m.selected_grant().unwrap().grant.label, "Broken");
    update(m, ch('j'));
    assert_eq!(m.selected_grant().unwrap().grant.label, "Web sessions");
}

#[test]
fn j_k_and_arrows_move() {
    let mut m = model_with(false, "default");
    assert_eq!(m.selected().unwrap().email, "dana.whitfield@example.com");
    update(&mut m, ch('j'));
    assert_eq!(m.selected().unwrap().email, "marcus.reyes@example.com");
    update(&mut m, ch('j'));
    assert_eq!(m.queue_sel, 1, "stops at the end");
    update(&mut m, ch('k'));
    assert_eq!(m.queue_sel, 0);
    update(&mut m, key(KeyCode::Down));
    assert_eq!(m.queue_sel, 1);
    update(&mut m, key(KeyCode::Up));
    assert_eq!(m.queue_sel, 0);
    update(&mut m, ch('k'));
    assert_eq!(m.queue_sel, 0, "stops at the top");
}

#[test]
fn tab_switches_pane() {
    let mut m = model_with(false, "default");
    assert_eq!(m.focus, Focus::Queue);
    update(&mut m, key(KeyCode::Tab));
    assert_eq!(m.focus, Focus::Matrix);
    update(&mut m, key(KeyCode::Tab));
    assert_eq!(m.focus, Focus::Activity);
    update(&mut m, key(KeyCode::Tab));
    assert_eq!(m.focus, Focus::Queue);
    update(&mut m, key(KeyCode::BackTab));
    assert_eq!(m.focus, Focus::Activity);
}

#[test]
fn enter_drills_in_and_esc_goes_back() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    assert_eq!(m.focus, Focus::Grants);
    assert_eq!(m.grant_view.len(), 5, "google grants of marcus");
    update(&mut m, ch('j'));
    assert_eq!(m.selected_grant().unwrap().grant.label, "Calendly");
    update(&mut m, key(KeyCode::Esc));
    assert_eq!(m.screen, Screen::Overview);
    assert_eq!(m.focus, Focus::Matrix);
    update(&mut m, key(KeyCode::Esc));
    assert_eq!(m.focus, Focus::Queue);
}

#[test]
fn slash_filters_the_grants() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch('/'));
    assert!(matches!(m.input, Some(Input::Filter(_))));
    typed(&mut m, "cal");
    assert_eq!(m.grant_view.len(), 1);
    assert_eq!(m.selected_grant().unwrap().grant.label, "Calendly");
    update(&mut m, key(KeyCode::Enter));
    assert!(m.input.is_none());
    assert_eq!(m.filter_grants, "cal", "Enter keeps the filter");
    update(&mut m, key(KeyCode::Esc));
    assert!(m.filter_grants.is_empty(), "Esc clears it");
    assert_eq!(m.grant_view.len(), 5);
    // Filtering by state works too.
    update(&mut m, ch('/'));
    typed(&mut m, "failed");
    assert_eq!(m.grant_view.len(), 1);
}

#[test]
fn slash_filters_the_queue() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('/'));
    typed(&mut m, "marcus");
    assert_eq!(m.queue_view().len(), 1);
    assert_eq!(m.selected().unwrap().email, "marcus.reyes@example.com");
}

#[test]
fn command_bar_add_app_theme_export_quit() {
    let mut m = model_with(false, "default");
    update(&mut m, ch(':'));
    let fx = typed(&mut m, "add New.Person@Example.com");
    assert!(fx.is_empty());
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::Discover {
            email: "new.person@example.com".into()
        }]
    );
    assert_eq!(m.selected().unwrap().email, "new.person@example.com");
    assert_eq!(m.selected().unwrap().status(), LeaverStatus::Discovering);

    update(&mut m, ch(':'));
    typed(&mut m, "add not-an-email");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert!(m.message.as_ref().unwrap().1.contains("not an email"));

    update(&mut m, ch('k'));
    update(&mut m, ch(':'));
    typed(&mut m, "app slack");
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.screen, Screen::Drill("slack".into()));

    update(&mut m, ch(':'));
    typed(&mut m, "theme mono");
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.theme.name, "mono");
    update(&mut m, ch(':'));
    typed(&mut m, "theme nosuch");
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.theme.name, "default");
    assert!(m.message.as_ref().unwrap().1.contains("no theme"));

    update(&mut m, ch(':'));
    typed(&mut m, "export");
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::Export {
            email: "marcus.reyes@example.com".into(),
            exit_at: None,
        }]
    );

    update(&mut m, ch(':'));
    typed(&mut m, "login slack");
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::Login {
            app: "slack".into()
        }]
    );
    assert!(matches!(m.dialog, Some(Dialog::Login { .. })));
    assert_eq!(
        update(&mut m, key(KeyCode::Esc)),
        vec![Effect::LoginCancel {
            app: "slack".into()
        }]
    );
    assert!(m.dialog.is_none());

    update(&mut m, ch(':'));
    typed(&mut m, "bogus");
    update(&mut m, key(KeyCode::Enter));
    assert!(m.message.as_ref().unwrap().1.contains("unknown command"));

    update(&mut m, ch(':'));
    typed(&mut m, "quit");
    assert!(!m.quit, "typing q in the bar does not quit");
    update(&mut m, key(KeyCode::Enter));
    // Marcus's revoke is running: quitting asks first.
    assert_eq!(
        m.dialog,
        Some(Dialog::Quit {
            quit_focused: false
        })
    );
    update(&mut m, key(KeyCode::Right));
    update(&mut m, key(KeyCode::Enter));
    assert!(m.quit);
}

#[test]
fn space_marks_and_r_revokes_marked_after_cancel_default() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch(' ')); // Web sessions, moves down
    update(&mut m, ch(' ')); // Calendly
    assert_eq!(m.marks.len(), 2);
    update(&mut m, ch('r'));
    let Some(Dialog::Confirm {
        yes_focused, count, ..
    }) = &m.dialog
    else {
        panic!("confirm dialog expected: {:?}", m.dialog)
    };
    assert!(!yes_focused, "the dialog opens on Cancel");
    assert_eq!(*count, 2);
    // Enter on the default does nothing.
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert!(m.dialog.is_none());
    assert_eq!(m.marks.len(), 2, "cancel keeps the marks");
    update(&mut m, ch('r'));
    update(&mut m, key(KeyCode::Right));
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::Revoke {
            email: "marcus.reyes@example.com".into(),
            scope: RevokeScope {
                keys: vec!["google/signout".into(), "google/token:x".into()],
                ..Default::default()
            }
        }]
    );
    assert!(m.marks.is_empty());
    assert_eq!(m.selected().unwrap().status(), LeaverStatus::Revoking);
}

#[test]
fn space_toggles_a_mark() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch(' '));
    update(&mut m, ch('k'));
    update(&mut m, ch(' '));
    assert!(m.marks.is_empty());
}

#[test]
fn r_on_selected_grant_and_retry_on_failed() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch('r'));
    let Some(Dialog::Confirm { scope, retry, .. }) = &m.dialog else {
        panic!()
    };
    assert_eq!(scope.keys, vec!["google/signout".to_string()]);
    assert!(!retry);
    update(&mut m, key(KeyCode::Esc));
    assert!(m.dialog.is_none());
    // The failed grant: r retries it.
    update(&mut m, ch('/'));
    typed(&mut m, "broken");
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, ch('r'));
    let Some(Dialog::Confirm { scope, retry, .. }) = &m.dialog else {
        panic!()
    };
    assert!(retry);
    assert_eq!(scope.keys, vec!["google/token:f".to_string()]);
    // A grant being removed cannot be revoked again.
    update(&mut m, key(KeyCode::Esc));
    update(&mut m, key(KeyCode::Esc));
    // The cursor stayed on the failed grant (first); Thunderbird is third.
    assert_eq!(m.selected_grant().unwrap().grant.label, "Broken");
    update(&mut m, ch('j'));
    update(&mut m, ch('j'));
    update(&mut m, ch('j'));
    assert_eq!(m.selected_grant().unwrap().grant.label, "Thunderbird");
    update(&mut m, ch('r'));
    assert!(m.dialog.is_none());
}

#[test]
fn r_in_matrix_revokes_the_app() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    update(&mut m, key(KeyCode::Tab));
    update(&mut m, ch('r'));
    let Some(Dialog::Confirm { scope, count, .. }) = &m.dialog else {
        panic!()
    };
    assert_eq!(scope.apps, vec!["google".to_string()]);
    assert_eq!(*count, 3, "two live and one failed");
}

#[test]
fn capital_r_needs_the_email_typed() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    update(&mut m, ch('R'));
    assert!(matches!(m.dialog, Some(Dialog::RevokeAll { .. })));
    typed(&mut m, "marcus.reyes@example.org");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert!(m.dialog.is_some(), "a wrong email keeps the dialog open");
    for _ in 0..3 {
        update(&mut m, key(KeyCode::Backspace));
    }
    // q and r typed here are text, not keys.
    typed(&mut m, "com");
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::Revoke {
            email: "marcus.reyes@example.com".into(),
            scope: RevokeScope::default()
        }]
    );
    assert!(m.dialog.is_none());
    assert!(!m.quit);
}

#[test]
fn capital_r_while_discovering_swallows_the_typed_email_and_waits() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    m.leavers[1].discovered = false;
    update(&mut m, ch('R'));
    assert!(
        matches!(m.dialog, Some(Dialog::RevokeAll { .. })),
        "the dialog opens at once, so typing never reaches the views"
    );
    // An email full of action keys (r, l, q) goes into the dialog only.
    assert!(typed(&mut m, "marcus.reyes@example.com").is_empty());
    assert!(!m.quit);
    assert!(
        update(&mut m, key(KeyCode::Enter)).is_empty(),
        "not before the inventory"
    );
    assert!(matches!(m.dialog, Some(Dialog::RevokeAll { .. })));
    m.leavers[1].discovered = true;
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::Revoke {
            email: "marcus.reyes@example.com".into(),
            scope: RevokeScope::default()
        }]
    );
}

#[test]
fn letters_never_move_the_confirm_focus_to_revoke() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch('r'));
    for c in "hlhl".chars() {
        update(&mut m, ch(c));
    }
    let Some(Dialog::Confirm { yes_focused, .. }) = &m.dialog else {
        panic!("confirm dialog expected")
    };
    assert!(!yes_focused);
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
}

#[test]
fn esc_cancels_revoke_all() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('R'));
    typed(&mut m, "dana");
    assert!(update(&mut m, key(KeyCode::Esc)).is_empty());
    assert!(m.dialog.is_none());
}

#[test]
fn v_and_ctrl_r_refresh_one_per_connector() {
    let mut m = model_with(false, "default");
    let fx = update(&mut m, ch('v'));
    assert_eq!(fx.len(), 2);
    assert!(m.connectors.iter().all(|c| c.in_flight));
    // A second request while in flight: pending, no duplicate.
    let fx = update(&mut m, ctrl('r'));
    assert!(fx.is_empty());
    assert!(m.connectors.iter().all(|c| c.pending));
    let fx = update(
        &mut m,
        Action::Refreshed {
            email: "dana.whitfield@example.com".into(),
            connector: Some("google".into()),
            result: Ok(CaseSnapshot {
                email: "dana.whitfield@example.com".into(),
                ..Default::default()
            }),
            health: vec![],
            at: t0(),
        },
    );
    assert_eq!(
        fx,
        vec![Effect::Refresh {
            email: "dana.whitfield@example.com".into(),
            connector: Some("google".into())
        }],
        "the pending refresh runs when the first ends"
    );
    assert!(m.connectors[0].in_flight && !m.connectors[0].pending);
}

#[test]
fn an_idle_tick_does_not_ask_for_a_redraw() {
    let mut m = model_with(false, "default");
    for c in &mut m.connectors {
        c.next_due = Some(t0() + chrono::Duration::seconds(60));
    }
    // Nothing under way (a removal in progress animates a spinner).
    for l in &mut m.leavers {
        l.revoking = false;
        for g in &mut l.grants {
            if g.state.is_removing() {
                g.state = GrantState::Verified { at: t0() };
            }
        }
    }
    assert!(!m.busy());
    m.dirty = false;
    // Same minute, nothing in flight, nothing due: no effect, no redraw.
    assert!(
        update(
            &mut m,
            Action::Tick(t0() + chrono::Duration::milliseconds(250))
        )
        .is_empty()
    );
    assert!(!m.dirty, "an idle tick must not redraw");
    // The clock's minute turning over is worth one redraw.
    update(&mut m, Action::Tick(t0() + chrono::Duration::seconds(61)));
    assert!(m.dirty);
}

#[test]
fn ticks_refresh_each_connector_on_its_own_interval() {
    let mut m = model_with(false, "default");
    let fx = update(&mut m, Action::Tick(t0()));
    assert_eq!(fx.len(), 2, "first tick: both due");
    assert!(
        update(&mut m, Action::Tick(t0() + chrono::Duration::seconds(1))).is_empty(),
        "in flight"
    );
    for id in ["google", "slack"] {
        update(
            &mut m,
            Action::Refreshed {
                email: "dana.whitfield@example.com".into(),
                connector: Some(id.into()),
                result: Err("HTTP 503".into()),
                health: vec![],
                at: t0(),
            },
        );
    }
    // Slack asks for 1 s but never goes below 2 s; a failed read slows down.
    assert_eq!(m.connectors[1].interval, Duration::from_secs(2));
    assert_eq!(m.connectors[1].backoff, 1);
    let now = t0() + chrono::Duration::seconds(3);
    assert!(
        update(&mut m, Action::Tick(now)).is_empty(),
        "4 s after a failure"
    );
    let fx = update(&mut m, Action::Tick(t0() + chrono::Duration::seconds(6)));
    assert_eq!(
        fx,
        vec![Effect::Refresh {
            email: "dana.whitfield@example.com".into(),
            connector: Some("slack".into())
        }]
    );
}

#[test]
fn rate_limit_notice_slows_refresh() {
    let mut m = model_with(false, "default");
    update(
        &mut m,
        Action::Engine(Event::Http(
            crate::connector::http::HttpNotice::RateLimited {
                connector: "google".into(),
                wait: Duration::from_secs(30),
                attempt: 1,
            },
        )),
    );
    assert_eq!(m.connectors[0].health, HealthState::RateLimited);
    let fx = update(&mut m, Action::Tick(t0() + chrono::Duration::seconds(10)));
    assert!(
        fx.iter()
            .all(|e| !matches!(e, Effect::Refresh { connector: Some(c), .. } if c == "google"))
    );
    assert!(m.activity.back().unwrap().text.contains("rate-limited"));
}

#[test]
fn help_and_quit_keys() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('?'));
    assert_eq!(m.dialog, Some(Dialog::Help { scroll: 0 }));
    update(&mut m, key(KeyCode::Esc));
    assert!(m.dialog.is_none());
    // Nothing in flight: q quits at once.
    let mut idle = model_with(false, "default");
    idle.leavers[1].revoking = false;
    update(&mut idle, ch('q'));
    assert!(idle.quit);
    // A removal in flight: q asks, Stay is the default, Esc and n stay.
    update(&mut m, ch('q'));
    assert_eq!(
        m.dialog,
        Some(Dialog::Quit {
            quit_focused: false
        })
    );
    update(&mut m, key(KeyCode::Enter));
    assert!(!m.quit && m.dialog.is_none(), "Enter on Stay stays");
    update(&mut m, ch('q'));
    update(&mut m, ch('y'));
    update(&mut m, ch('q'));
    assert!(!m.quit && m.dialog.is_none(), "letters never quit");
    update(&mut m, ch('q'));
    update(&mut m, key(KeyCode::Tab));
    update(&mut m, key(KeyCode::Enter));
    assert!(m.quit);
    let mut m = model_with(false, "default");
    update(&mut m, ch('R'));
    update(&mut m, ctrl('c'));
    assert!(!m.quit, "Ctrl-C during work asks first");
    assert!(matches!(m.dialog, Some(Dialog::Quit { .. })));
    update(&mut m, ctrl('c'));
    assert!(m.quit, "a second Ctrl-C quits");
}

#[test]
fn enter_on_manual_step_records_a_note() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    update(&mut m, ch(':'));
    typed(&mut m, "app slack");
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, ch('r'));
    assert!(m.dialog.is_none(), "r does not revoke a manual step");
    update(&mut m, key(KeyCode::Enter));
    assert!(matches!(m.dialog, Some(Dialog::ManualNote { .. })));
    assert!(
        update(&mut m, key(KeyCode::Enter)).is_empty(),
        "a note is required"
    );
    typed(&mut m, "bot moved to it-ops");
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::ManualDone {
            email: "marcus.reyes@example.com".into(),
            key: "slack/manual:1".into(),
            note: "bot moved to it-ops".into()
        }]
    );
}

#[test]
fn read_only_has_no_action_keys() {
    let mut m = model_with(true, "default");
    in_google(&mut m);
    for c in [' ', 'r', 'R'] {
        assert!(update(&mut m, ch(c)).is_empty());
        assert!(m.dialog.is_none(), "{c}");
    }
    assert!(m.marks.is_empty());
    update(&mut m, key(KeyCode::Esc));
    update(&mut m, ch(':'));
    typed(&mut m, "app slack");
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Enter));
    assert!(m.dialog.is_none(), "no manual-done in read-only");
    let hints: Vec<&str> = view::hints(&m).into_iter().map(|(k, _)| k).collect();
    assert!(!hints.contains(&"r") && !hints.contains(&"R") && !hints.contains(&"Space"));
}

#[test]
fn engine_states_move_a_grant_from_removing_to_verified() {
    let mut m = model_with(false, "default");
    let email = "marcus.reyes@example.com".to_string();
    let at = t0() + chrono::Duration::seconds(3);
    update(
        &mut m,
        Action::Engine(Event::State {
            email: email.clone(),
            key: "google/token:x".into(),
            state: GrantState::Removed,
            at,
        }),
    );
    let g = m.leavers[1].grant("google/token:x").unwrap();
    assert_eq!(g.state, GrantState::Removed);
    update(
        &mut m,
        Action::Engine(Event::State {
            email,
            key: "google/token:x".into(),
            state: GrantState::Verified { at },
            at,
        }),
    );
    let g = m.leavers[1].grant("google/token:x").unwrap();
    assert_eq!(g.state, GrantState::Verified { at });
    assert_eq!(g.since_state, Some(at));
    assert!(m.activity.back().unwrap().text.contains("verified"));
}

#[test]
fn team_mode_shows_who_holds_a_leaver_and_other_operators_steps() {
    let mut m = model_with(false, "default");
    let since = t0() - chrono::Duration::minutes(7);
    update(
        &mut m,
        Action::Engine(Event::Holder {
            email: "dana.whitfield@example.com".into(),
            holder: Some("bob@jump2".into()),
            since: Some(since),
        }),
    );
    // A leaver another host works joins the queue.
    update(
        &mut m,
        Action::Engine(Event::Holder {
            email: "tom.becker@example.com".into(),
            holder: Some("carol@jump3".into()),
            since: Some(since),
        }),
    );
    assert_eq!(m.leavers.len(), 3);
    update(
        &mut m,
        Action::Engine(Event::TeamStep {
            email: "dana.whitfield@example.com".into(),
            operator: "bob".into(),
            text: "verified: fresh read".into(),
        }),
    );
    assert_eq!(
        m.activity.back().unwrap().text,
        "[bob] dana.whitfield@example.com: verified: fresh read"
    );
    let screen = text(&render(&m, 160, 30));
    assert!(
        screen.contains(&format!(
            "held: bob@jump2 {}",
            since.with_timezone(&chrono::Local).format("%H:%M")
        )),
        "{screen}"
    );
    // Free again: the mark goes.
    update(
        &mut m,
        Action::Engine(Event::Holder {
            email: "dana.whitfield@example.com".into(),
            holder: None,
            since: None,
        }),
    );
    assert!(m.leavers[0].holder.is_none());
    let screen = text(&render(&m, 160, 30));
    assert!(!screen.contains("held: bob"), "{screen}");
}

// ---- rendering ----

fn render(m: &Model, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(m, f.area(), f.buffer_mut())).unwrap();
    t.backend().buffer().clone()
}

fn text(buf: &Buffer) -> String {
    let a = buf.area;
    (0..a.height)
        .map(|y| {
            (0..a.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Position of the first occurrence of `needle` on screen.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let a = buf.area;
    for y in 0..a.height {
        let line: Vec<&str> = (0..a.width).map(|x| buf[(x, y)].symbol()).collect();
        let joined = line.concat();
        if let Some(byte) = joined.find(needle) {
            // Map the byte offset back to a column.
            let mut acc = 0;
            for (x, s) in line.iter().enumerate() {
                if acc == byte {
                    return Some((x as u16, y));
                }
                acc += s.len();
            }
        }
    }
    None
}

#[test]
fn overview_at_80x24_shows_key_information() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    let buf = render(&m, 80, 24);
    let s = text(&buf);
    for want in [
        "[RW]",
        "ops@example.com",
        "Google Workspace",
        "auth error",
        "marcus.reyes@example.com",
        "revoking",
        "1 live",
        "sess",
        "oauth",
        "Activity",
        "q quit",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    // The live session count is styled live (red, bold) in the default
    // theme, with its state letter beside it.
    let live = m.theme.style(Role::Live);
    let (sx, sy) = find(&buf, "sess 1L").unwrap();
    assert_eq!(buf[(sx + 5, sy)].fg, live.fg.unwrap(), "{s}");
    assert_eq!(buf[(sx + 6, sy)].symbol(), "L");
}

#[test]
fn header_shows_read_only() {
    let m = model_with(true, "default");
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("[RO]"));
    assert!(!s.contains("revoke"), "{s}");
}

#[test]
fn danger_dialog_is_focused_on_cancel() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch('r'));
    let buf = render(&m, 100, 30);
    let s = text(&buf);
    assert!(
        s.contains("Revoke 1 grant(s) for marcus.reyes@example.com?"),
        "{s}"
    );
    let (cx, cy) = find(&buf, "Cancel").unwrap();
    let (rx, ry) = find(&buf, "[ Revoke ]").map(|(x, y)| (x + 2, y)).unwrap();
    assert_eq!(cy, ry);
    let sel = m.theme.style(Role::Selection);
    assert!(
        buf[(cx, cy)].modifier.contains(Modifier::REVERSED),
        "Cancel is highlighted"
    );
    assert_eq!(buf[(cx, cy)].modifier, sel.add_modifier);
    assert!(
        !buf[(rx, ry)].modifier.contains(Modifier::REVERSED),
        "Revoke is not"
    );
    // Moving to Revoke paints it in the danger style.
    update(&mut m, key(KeyCode::Right));
    let buf = render(&m, 100, 30);
    let danger = m.theme.style(Role::Danger);
    assert_eq!(buf[(rx, ry)].bg, danger.bg.unwrap());
    assert!(!buf[(cx, cy)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn mono_selection_is_reversed_without_colours() {
    let mut m = model_with(false, "mono");
    in_google(&mut m);
    update(&mut m, ch('j'));
    let buf = render(&m, 100, 30);
    let (x, y) = find(&buf, "Calendly").unwrap();
    let c = &buf[(x, y)];
    assert!(c.modifier.contains(Modifier::REVERSED));
    assert_eq!(c.fg, ratatui::style::Color::Reset);
    assert_eq!(c.bg, ratatui::style::Color::Reset);
    // Everything on screen is colourless.
    for y in 0..30 {
        for x in 0..100 {
            let c = &buf[(x, y)];
            assert_eq!(
                (c.fg, c.bg),
                (ratatui::style::Color::Reset, ratatui::style::Color::Reset)
            );
        }
    }
}

#[test]
fn removing_and_verified_styles() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    let buf = render(&m, 120, 30);
    let s = text(&buf);
    let (x, y) = find(&buf, "Thunderbird").unwrap();
    let removing = m.theme.style(Role::Removing);
    assert_eq!(buf[(x, y)].fg, removing.fg.unwrap());
    assert!(buf[(x, y)].modifier.contains(Modifier::ITALIC));
    assert!(s.contains("removing"), "{s}");
    let (x, y) = find(&buf, "Groups Admin").unwrap();
    assert_eq!(buf[(x, y)].fg, m.theme.style(Role::Verified).fg.unwrap());
    let shown = super::view::state_role(&GrantState::Verified { at: t0() });
    assert_eq!(shown, Role::Verified);
    assert!(s.contains("verified "), "verified with its time\n{s}");
    // In mono, removing is italic and verified dim.
    update(&mut m, ch(':'));
    typed(&mut m, "theme mono");
    update(&mut m, key(KeyCode::Enter));
    let buf = render(&m, 120, 30);
    let (x, y) = find(&buf, "Thunderbird").unwrap();
    assert!(buf[(x, y)].modifier.contains(Modifier::ITALIC));
    let (x, y) = find(&buf, "Groups Admin").unwrap();
    assert!(buf[(x, y)].modifier.contains(Modifier::DIM));
}

#[test]
fn drill_down_at_80x24_keeps_label_and_state() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    let s = text(&render(&m, 80, 24));
    for want in ["Calendly", "live", "verified 10:00:00", "Space mark"] {
        assert!(s.contains(want), "missing {want:?}\n{s}");
    }
    // The label gets the spare width: a 40-column label is not cut.
    m.leaver_mut("marcus.reyes@example.com").unwrap().grants[1]
        .grant
        .label = "Calendly Scheduling for Enterprise Teams".into();
    m.recompute_grants();
    let s = text(&render(&m, 80, 24));
    assert!(
        s.contains("Calendly Scheduling for Enterprise Teams"),
        "{s}"
    );
    // The selected failed grant (listed first) shows its reason and the
    // manual step.
    update(&mut m, ch('g'));
    assert_eq!(m.selected_grant().unwrap().grant.label, "Broken");
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("HTTP 500"), "{s}");
    assert!(s.contains("manual: retry with r, or remove it in"), "{s}");
    // Enter shows the whole grant.
    update(&mut m, key(KeyCode::Enter));
    assert!(matches!(m.dialog, Some(Dialog::GrantDetail { .. })));
    let s = text(&render(&m, 80, 24));
    for want in ["reason", "HTTP 500", "details of Broken", "token:f"] {
        assert!(s.contains(want), "missing {want:?}\n{s}");
    }
    update(&mut m, key(KeyCode::Esc));
    assert!(m.dialog.is_none());
}

#[test]
fn grant_columns_give_the_label_the_spare_width() {
    let c = view::grant_columns(78);
    assert!(c.label >= 40, "{c:?}");
    assert!(c.state >= 17, "{c:?}");
    assert_eq!(c.details, 0);
    let wide = view::grant_columns(160);
    assert!(wide.details >= 24 && wide.label >= 34, "{wide:?}");
    for w in [20u16, 50, 78, 100, 160, 300] {
        let c = view::grant_columns(w);
        let sum = c.mark + c.label + c.kind + c.risk + c.state + c.since + c.details;
        assert!(sum <= w.max(20), "{w}: {c:?}");
    }
}

fn queue_of(n: usize) -> Model {
    let mut m = model_with(false, "default");
    m.leavers = (0..n)
        .map(|i| LeaverRow::new(&format!("leaver{i}@example.com")))
        .collect();
    m
}

#[test]
fn the_queue_is_discovered_several_leavers_at_a_time() {
    let mut m = queue_of(20);
    let fx = super::update::init(&mut m);
    assert_eq!(discovers(&fx), vec!["leaver0@example.com"]);
    let fx = update(
        &mut m,
        Action::Discovered {
            email: "leaver0@example.com".into(),
            result: Ok(CaseSnapshot::default()),
            health: vec![],
        },
    );
    // Then the rest, BACKGROUND_DISCOVERIES at once, in queue order.
    let started = discovers(&fx);
    assert_eq!(started.len(), super::update::BACKGROUND_DISCOVERIES);
    assert_eq!(started[0], "leaver1@example.com");
    assert!(discovers(&update(&mut m, Action::Tick(t0()))).is_empty());
    let fx = update(
        &mut m,
        Action::Discovered {
            email: "leaver3@example.com".into(),
            result: Ok(CaseSnapshot::default()),
            health: vec![],
        },
    );
    assert_eq!(
        discovers(&fx),
        vec![format!(
            "leaver{}@example.com",
            super::update::BACKGROUND_DISCOVERIES + 1
        )]
    );
}

fn discovers(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Discover { email } => Some(email.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_selected_leaver_is_discovered_first_then_the_rest_in_order() {
    let mut m = queue_of(4);
    m.background_discoveries = 1;
    let fx = super::update::init(&mut m);
    assert_eq!(discovers(&fx), vec!["leaver0@example.com"]);
    // Nothing else starts while the selected leaver is being discovered.
    assert!(discovers(&update(&mut m, Action::Tick(t0()))).is_empty());
    let done = |email: &str| Action::Discovered {
        email: email.into(),
        result: Ok(CaseSnapshot::default()),
        health: vec![],
    };
    let fx = update(&mut m, done("leaver0@example.com"));
    assert_eq!(discovers(&fx), vec!["leaver1@example.com"]);
    // The selection moves to an undiscovered leaver: it goes next, now.
    update(&mut m, ch('/'));
    typed(&mut m, "leaver3");
    update(&mut m, key(KeyCode::Enter));
    assert_eq!(m.selected().unwrap().email, "leaver3@example.com");
    let fx = update(&mut m, ch('j'));
    assert!(discovers(&fx).is_empty(), "already running");
    assert!(m.leavers[3].discovering);
    let fx = update(&mut m, done("leaver1@example.com"));
    assert!(
        discovers(&fx).is_empty(),
        "the selected one is still running"
    );
    let fx = update(&mut m, done("leaver3@example.com"));
    assert_eq!(discovers(&fx), vec!["leaver2@example.com"]);
    update(&mut m, key(KeyCode::Esc));
    assert_eq!(m.selected().unwrap().email, "leaver3@example.com");
    // A failed discovery is not retried by itself; v asks again.
    let fx = update(
        &mut m,
        Action::Discovered {
            email: "leaver2@example.com".into(),
            result: Err("boom".into()),
            health: vec![],
        },
    );
    assert!(discovers(&fx).is_empty());
    assert_eq!(m.leavers[2].status(), LeaverStatus::DiscoveryFailed);
    update(&mut m, ch('k'));
    let fx = update(&mut m, ch('v'));
    assert_eq!(discovers(&fx), vec!["leaver2@example.com"]);
}

#[test]
fn other_leavers_show_how_old_their_status_is() {
    let mut m = queue_of(2);
    for l in &mut m.leavers {
        l.discovered = true;
        l.as_of = Some(t0());
    }
    let s = text(&render(&m, 80, 24));
    let as_of = format!(
        "as of {}",
        t0().with_timezone(&chrono::Local).format("%H:%M")
    );
    // Shown for the second leaver, not for the selected (live) one.
    assert_eq!(s.matches(&as_of).count(), 1, "{s}");
}

#[test]
fn login_dialog_device_code() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    update(&mut m, ch(':'));
    typed(&mut m, "login slack");
    assert_eq!(
        update(&mut m, key(KeyCode::Enter)),
        vec![Effect::Login {
            app: "slack".into()
        }]
    );
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("Sign in to slack"), "{s}");
    assert!(s.contains("asking the authorization server"), "{s}");
    update(
        &mut m,
        Action::LoginPrompt {
            app: "slack".into(),
            prompt: LoginPrompt::Device {
                user_code: "WDJB-MJHT".into(),
                verification_uri: "https://example.com/device".into(),
                verification_uri_complete: Some(
                    "https://example.com/device?user_code=WDJB-MJHT".into(),
                ),
                expires_at: t0() + chrono::Duration::minutes(10),
            },
        },
    );
    let s = text(&render(&m, 80, 24));
    for want in [
        "WDJB-MJHT",
        "https://example.com/device",
        "user_code=WDJB-MJHT",
        "waiting for approval",
        "10:00 more",
    ] {
        assert!(s.contains(want), "missing {want:?}\n{s}");
    }
    // Keys other than Esc do nothing while waiting.
    assert!(update(&mut m, ch('q')).is_empty());
    assert!(!m.quit && m.dialog.is_some());
    // A failure is shown in the dialog.
    update(
        &mut m,
        Action::LoginFinished {
            app: "slack".into(),
            result: Err("access_denied: the user refused".into()),
        },
    );
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("Sign-in failed: access_denied"), "{s}");
    assert!(update(&mut m, key(KeyCode::Esc)).is_empty());
    assert!(m.dialog.is_none());

    // Success closes the dialog and reads the app again at once.
    update(&mut m, ch(':'));
    typed(&mut m, "login slack");
    update(&mut m, key(KeyCode::Enter));
    m.connectors[1].backoff = 3;
    let fx = update(
        &mut m,
        Action::LoginFinished {
            app: "slack".into(),
            result: Ok("signed in".into()),
        },
    );
    assert!(m.dialog.is_none());
    assert_eq!(
        fx,
        vec![Effect::Refresh {
            email: "marcus.reyes@example.com".into(),
            connector: Some("slack".into())
        }]
    );
    assert_eq!(m.connectors[1].backoff, 0);
    // The refresh's health reaches the header.
    update(
        &mut m,
        Action::Refreshed {
            email: "marcus.reyes@example.com".into(),
            connector: Some("slack".into()),
            result: Ok(CaseSnapshot::default()),
            health: vec![(
                "slack".into(),
                crate::connector::Health {
                    state: HealthState::Ok,
                    detail: None,
                    limit_info: None,
                },
            )],
            at: t0(),
        },
    );
    let s = text(&render(&m, 80, 24));
    assert!(!s.contains("auth error"), "{s}");
}

#[test]
fn login_dialog_paste_back() {
    let mut m = model_with(false, "default");
    update(&mut m, ch(':'));
    typed(&mut m, "login google");
    update(&mut m, key(KeyCode::Enter));
    update(
        &mut m,
        Action::LoginPrompt {
            app: "google".into(),
            prompt: LoginPrompt::Code {
                url: "https://auth.example.com/authorize?client_id=x&state=s1".into(),
                redirect_uri: "http://127.0.0.1:4000/callback".into(),
                browser_opened: false,
            },
        },
    );
    let s = text(&render(&m, 100, 30));
    assert!(s.contains("https://auth.example.com/authorize"), "{s}");
    assert!(s.contains("paste it here"), "{s}");
    typed(&mut m, "nonsense");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert!(m.message.as_ref().unwrap().1.contains("code="));
    for _ in 0.."nonsense".len() {
        update(&mut m, key(KeyCode::Backspace));
    }
    update(
        &mut m,
        Action::Paste("http://127.0.0.1:4000/callback?code=abc&state=s1\n".into()),
    );
    let fx = update(&mut m, key(KeyCode::Enter));
    assert_eq!(
        fx,
        vec![Effect::LoginPaste {
            app: "google".into(),
            url: "http://127.0.0.1:4000/callback?code=abc&state=s1".into()
        }]
    );
    let s = text(&render(&m, 100, 30));
    assert!(s.contains("exchanging the code"), "{s}");
}

#[test]
fn ambiguous_accounts_are_listed() {
    let mut m = model_with(false, "default");
    let cand = |id: &str, login: &str, active: bool| Candidate {
        id: id.into(),
        login: login.into(),
        display_name: "Lena Kowalski".into(),
        active,
        last_login: Some("2026-02-01".into()),
    };
    m.leavers[0].accounts.insert(
        "slack".into(),
        AccountStatus::Ambiguous {
            candidates: vec![
                cand("005A", "lena.kowalski@example.com", true),
                cand("005B", "lena.kowalski@example.com.old", false),
            ],
        },
    );
    update(&mut m, key(KeyCode::Enter)); // to the matrix
    update(&mut m, ch('j')); // Slack
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("2 matches"), "{s}");
    update(&mut m, key(KeyCode::Enter));
    assert!(matches!(m.dialog, Some(Dialog::Accounts { .. })));
    let s = text(&render(&m, 80, 24));
    for want in [
        "2 accounts match in Slack",
        "lena.kowalski@example.com.old",
        "inactive",
        "2026-02-01",
        "id 005B",
        "never guesses",
    ] {
        assert!(s.contains(want), "missing {want:?}\n{s}");
    }
    update(&mut m, key(KeyCode::Esc));
    assert!(m.dialog.is_none());
    // Enter picks the selected candidate; the engine records it.
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, ch('j'));
    assert_eq!(
        update(&mut m, key(KeyCode::Enter)),
        vec![Effect::PickAccount {
            email: "dana.whitfield@example.com".into(),
            app: "slack".into(),
            account_id: "005B".into()
        }]
    );
    assert!(m.dialog.is_none());
    update(
        &mut m,
        Action::Picked {
            email: "dana.whitfield@example.com".into(),
            app: "slack".into(),
            account: "005B".into(),
            result: Err("not one of the candidates".into()),
            health: vec![],
        },
    );
    assert!(m.message.as_ref().unwrap().1.contains("pick not applied"));
}

#[test]
fn read_only_cannot_pick_an_account() {
    let mut m = model_with(true, "default");
    m.leavers[0].accounts.insert(
        "slack".into(),
        AccountStatus::Ambiguous {
            candidates: vec![Candidate {
                id: "A".into(),
                login: "a".into(),
                display_name: String::new(),
                active: true,
                last_login: None,
            }],
        },
    );
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, ch('j'));
    update(&mut m, key(KeyCode::Enter));
    assert!(matches!(m.dialog, Some(Dialog::Accounts { .. })));
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert!(m.message.as_ref().unwrap().1.contains("read-only"));
}

#[test]
fn header_fits_at_80_columns_when_rate_limited() {
    let mut m = model_with(false, "default");
    m.connectors.push(ConnectorRow::new(
        "salesforce",
        "Salesforce",
        Duration::from_secs(5),
    ));
    for c in &mut m.connectors {
        c.last_refresh = Some(t0());
    }
    m.connectors[1].health = HealthState::RateLimited;
    m.connectors[2].health = HealthState::Unknown;
    let s = text(&render(&m, 80, 24));
    let header = s.lines().nth(1).unwrap();
    for want in ["Google Workspace ok", "Slack rate-limited", "Salesforce"] {
        assert!(header.contains(want), "missing {want:?} in {header:?}");
    }
    m.symbols.ascii = true;
    let s = text(&render(&m, 80, 24));
    assert!(s.lines().nth(1).unwrap().contains("Salesforce ..."), "{s}");
}

#[test]
fn header_names_the_apps_in_trouble_when_eight_do_not_fit_at_80_columns() {
    let mut m = model_with(false, "default");
    for (id, name) in [
        ("github", "GitHub"),
        ("microsoft-graph", "Microsoft 365"),
        ("miro", "Miro"),
        ("okta", "Okta"),
        ("salesforce", "Salesforce"),
        ("zoom", "Zoom"),
    ] {
        m.connectors
            .push(ConnectorRow::new(id, name, Duration::from_secs(5)));
    }
    for c in &mut m.connectors {
        c.health = HealthState::Ok;
        c.last_refresh = Some(t0());
    }
    let header = |m: &Model| {
        text(&render(m, 80, 24))
            .lines()
            .nth(1)
            .unwrap()
            .trim_end()
            .to_string()
    };
    assert!(header(&m).contains("all 8 apps ok"), "{}", header(&m));
    // The last app in trouble is named, never cut off the end.
    let zoom = m.connectors.iter().position(|c| c.id == "zoom").unwrap();
    m.connectors[zoom].health = HealthState::AuthError;
    let h = header(&m);
    assert!(h.contains("zoom auth error"), "{h}");
    assert!(h.contains("7 more ok"), "{h}");
    // Wide enough, every app is named.
    let wide = text(&render(&m, 200, 24));
    assert!(
        wide.lines().nth(1).unwrap().contains("Microsoft 365 ok"),
        "{wide}"
    );
}

#[test]
fn ascii_mode_draws_ascii_only() {
    let (mut m, _) = Model::new("ops", false, true, ThemeSet::builtin(false), "default");
    let base = model_with(false, "default");
    m.connectors = base.connectors;
    m.leavers = base.leavers;
    update(&mut m, ch('j'));
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, ch(' '));
    let s = text(&render(&m, 80, 24));
    assert!(s.is_ascii(), "{s}");
    assert!(s.contains("+---") || s.contains("+-"));
}

#[test]
fn display_names_with_escape_sequences_are_sanitised() {
    let mut m = model_with(false, "default");
    let evil = "Eve\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}gpj.exe\r\nX";
    update(
        &mut m,
        Action::Engine(Event::Lookup {
            email: "dana.whitfield@example.com".into(),
            connector: "google".into(),
            lookup: Lookup::Found {
                account: Account {
                    connector: "google".into(),
                    id: "1".into(),
                    login: "dana@example.com".into(),
                    display_name: evil.into(),
                    active: true,
                    is_admin: false,
                    last_login: None,
                    facts: vec![],
                    addresses: vec![],
                    matched_by: None,
                },
            },
        }),
    );
    let mut g = grant("google", "token:evil", GrantKind::OauthGrant, evil);
    g.details = evil.into();
    update(
        &mut m,
        Action::Engine(Event::Inventory {
            email: "dana.whitfield@example.com".into(),
            connector: "google".into(),
            grants: vec![g],
            failed: vec![(GrantKind::Session, evil.into())],
            at: t0(),
        }),
    );
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Enter));
    let buf = render(&m, 160, 40);
    let s = text(&buf);
    assert!(s.contains("Eve^[]0;pwned^G^[[2J"), "{s}");
    for c in s.chars() {
        assert!(
            !c.is_control() || c == '\n',
            "control character {c:?} on screen"
        );
        assert!(
            !('\u{80}'..='\u{9f}').contains(&c) && c != '\u{202e}',
            "{c:?} on screen"
        );
    }
}

#[test]
fn a_refused_revoke_shows_its_reason_and_the_manual_step() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch('g'));
    update(
        &mut m,
        Action::Engine(Event::State {
            email: "marcus.reyes@example.com".into(),
            key: "google/token:f".into(),
            state: GrantState::Failed {
                reason: "refused by the app: default case owner; manual step: Reassign the Default Case Owner in Setup, then deactivate again".into(),
            },
            at: t0(),
        }),
    );
    let s = text(&render(&m, 80, 24));
    assert!(
        s.contains("  refused by the app: default case owner"),
        "{s}"
    );
    assert!(
        s.contains("  manual: Reassign the Default Case Owner in Setup"),
        "{s}"
    );
    update(&mut m, key(KeyCode::Enter));
    let s = text(&render(&m, 80, 24));
    // The popup wraps the whole step under its label.
    assert!(s.contains("then deactivate again"), "{s}");
    assert!(!s.contains("; manual step:"), "{s}");
}

#[test]
fn wrap_text_keeps_words_and_cuts_long_ones() {
    assert_eq!(
        view::wrap_text("one two three four", 9),
        vec!["one two", "three", "four"]
    );
    assert_eq!(view::wrap_text("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    assert_eq!(view::wrap_text("", 4), vec![""]);
}

#[test]
fn a_burst_of_rate_limits_is_one_activity_line() {
    let mut m = model_with(false, "default");
    let before = m.activity.len();
    for _ in 0..5 {
        update(
            &mut m,
            Action::Engine(Event::Http(
                crate::connector::http::HttpNotice::RateLimited {
                    connector: "slack".into(),
                    wait: Duration::from_millis(500),
                    attempt: 1,
                },
            )),
        );
    }
    assert_eq!(m.activity.len(), before + 1);
    let last = &m.activity.back().unwrap().text;
    assert!(last.contains("slack: rate-limited 5 times"), "{last}");
    assert_eq!(m.connectors[1].health, HealthState::RateLimited);
}

#[test]
fn the_matrix_says_closed_once_the_suspension_is_verified() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j')); // Marcus
    m.leavers[1].accounts.insert(
        "google".into(),
        AccountStatus::Found {
            login: "marcus.reyes@example.com".into(),
            display_name: "Marcus Reyes".into(),
            active: true,
        },
    );
    let suspend = grant("google", "suspend", GrantKind::Account, "Suspend account");
    m.leavers[1]
        .grants
        .push(row(suspend.clone(), GrantState::Removed));
    m.recompute_grants();
    let s = text(&render(&m, 100, 30));
    assert!(s.contains("active"), "removal not yet confirmed:\n{s}");
    assert!(!s.contains("closed"), "{s}");
    m.leavers[1].grants.last_mut().unwrap().state = GrantState::Verified { at: t0() };
    m.recompute_grants();
    let s = text(&render(&m, 100, 30));
    assert!(s.contains("closed"), "{s}");
}

#[test]
fn the_queue_says_when_an_app_could_not_be_read() {
    let mut m = model_with(false, "default");
    assert_eq!(m.leavers[0].status().label(), "1 live");
    m.leavers[0].accounts.insert(
        "slack".into(),
        AccountStatus::Failed {
            error: "HTTP 500".into(),
        },
    );
    assert_eq!(m.leavers[0].status().label(), "1 live, 1 app unknown");
}

#[test]
fn an_address_found_in_no_app_is_shown_as_such_never_as_all_clear() {
    let mut m = model_with(false, "default");
    let email = "d\u{430}na.whitfield@example.com";
    m.leavers.push(LeaverRow::new(email));
    update(
        &mut m,
        Action::Discovered {
            email: email.into(),
            result: Ok(CaseSnapshot {
                email: email.into(),
                display_name: None,
                accounts: vec![
                    ("google".into(), AccountStatus::NotFound),
                    ("slack".into(), AccountStatus::NotFound),
                ],
                grants: vec![],
            }),
            health: vec![],
        },
    );
    let l = m.leavers.iter().find(|l| l.email == email).unwrap();
    assert_eq!(l.status(), LeaverStatus::NotFoundAnywhere);
    let (level, msg) = m.message.clone().unwrap();
    assert_eq!(level, Level::Warn);
    assert!(
        msg.contains("not found in any app: check the address"),
        "{msg}"
    );
    assert!(
        m.activity
            .iter()
            .any(|a| a.text.contains("U+0430 Cyrillic at position 2")),
        "{:?}",
        m.activity
    );
    let buf = render(&m, 120, 30);
    let s = text(&buf);
    assert!(s.contains("not found in any app"), "{s}");
    let (x, y) = find(&buf, "not found in any app").unwrap();
    assert_eq!(buf[(x, y)].fg, m.theme.style(Role::Error).fg.unwrap());
}

#[test]
fn a_broken_ledger_chain_stays_in_the_header() {
    let mut m = model_with(false, "default");
    m.ledger_broken = true;
    let buf = render(&m, 80, 24);
    let s = text(&buf);
    assert!(s.contains("LEDGER CHAIN BROKEN"), "{s}");
    let (x, y) = find(&buf, "LEDGER CHAIN BROKEN").unwrap();
    assert_eq!(buf[(x, y)].fg, m.theme.style(Role::Danger).fg.unwrap());
}

// ---- 80x24, as the operator sees it ----

/// Marcus with a grant of every kind in Google (one failed, one manual,
/// one verified), and some in Slack.
fn every_kind() -> Model {
    let mut m = model_with(false, "default");
    let l = &mut m.leavers[1];
    l.grants.clear();
    for (i, k) in GrantKind::ALL.iter().enumerate() {
        let state = match i {
            0 => GrantState::Failed {
                reason: "HTTP 403".into(),
            },
            1 => GrantState::Verified { at: t0() },
            2 => GrantState::Removed,
            _ => GrantState::Live,
        };
        l.grants.push(row(
            grant("google", &format!("g{i}"), *k, &format!("{k} grant")),
            state,
        ));
    }
    for (i, k) in [GrantKind::Session, GrantKind::ApiKey].iter().enumerate() {
        l.grants.push(row(
            grant("slack", &format!("s{i}"), *k, &format!("slack {k}")),
            GrantState::Live,
        ));
    }
    update(&mut m, ch('j'));
    m
}

fn states_to_draw() -> Vec<Model> {
    let mut out = Vec::new();
    out.push(model_with(false, "default"));
    out.push(every_kind());
    let mut m = every_kind();
    update(&mut m, key(KeyCode::Enter));
    out.push(m);
    let mut m = model_with(false, "default");
    in_google(&mut m);
    out.push(m);
    for open in [
        Action::Key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE)),
        ch('r'),
        ch('R'),
        ch('q'),
        key(KeyCode::Enter),
    ] {
        let mut m = model_with(false, "mono");
        in_google(&mut m);
        update(&mut m, open);
        assert!(m.dialog.is_some());
        out.push(m);
    }
    for stage in 0..3 {
        out.push(batch_model(stage));
    }
    let mut m = model_with(false, "default");
    update(
        &mut m,
        Action::Exported {
            email: "dana.whitfield@example.com".into(),
            result: Ok("/home/someone/.local/share/offboard/reports/dana.whitfield@example.com-20260302T100000.md".into()),
        },
    );
    out.push(m);
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    update(&mut m, ch(':'));
    typed(&mut m, "app slack");
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Enter));
    assert!(matches!(m.dialog, Some(Dialog::ManualNote { .. })));
    out.push(m);
    out
}

#[test]
fn every_size_from_1x1_draws_without_a_panic() {
    let states = states_to_draw();
    let draw = |m: &Model, w: u16, h: u16| {
        let mut buf = Buffer::empty(ratatui::layout::Rect::new(0, 0, w, h));
        view::draw(m, buf.area, &mut buf);
    };
    // Every size for the overview and the drill-down; the dialogs at every
    // height for a spread of widths and every width near the minimum.
    for w in 1..=200u16 {
        for h in 1..=60u16 {
            draw(&states[1], w, h);
            draw(&states[3], w, h);
            if w % 9 == 0 || (30..=90).contains(&w) && h <= 30 {
                for m in &states {
                    draw(m, w, h);
                }
            }
        }
    }
    // And on a TestBackend, through a terminal, at the edges.
    for (w, h) in [(1, 1), (39, 11), (40, 12), (80, 8), (200, 60)] {
        for m in &states {
            render(m, w, h);
        }
    }
}

#[test]
fn a_small_terminal_says_so_and_growing_restores_the_view() {
    let mut m = model_with(false, "default");
    update(&mut m, Action::Resize(30, 8));
    let s = text(&render(&m, 30, 8));
    assert!(s.contains("terminal too small (30 x 8,"), "{s}");
    assert!(s.contains("need 40 x 12"), "{s}");
    let s = text(&render(&m, 80, 8));
    assert!(
        s.contains("terminal too small (80 x 8, need 40 x 12)"),
        "{s}"
    );
    // Keys still work while it is too small.
    update(&mut m, ch('j'));
    update(&mut m, Action::Resize(80, 24));
    let s = text(&render(&m, 80, 24));
    assert!(!s.contains("too small"), "{s}");
    assert!(s.contains("Marcus Reyes <marcus.reyes@example.com>"), "{s}");
}

#[test]
fn the_matrix_shows_every_kind_with_a_count_at_80_columns() {
    for theme in ["default", "mono"] {
        let mut m = every_kind();
        m.theme = m.themes.get(theme).0;
        let buf = render(&m, 80, 24);
        let s = text(&buf);
        for k in GrantKind::ALL {
            let short = super::view::kind_short(k);
            assert!(
                s.contains(&format!("{short} 1")),
                "{theme}: {k} ({short}) missing\n{s}"
            );
        }
        // Letters beside the counts: readable without colour.
        for cell in ["1F", "1V", "1R", "1L"] {
            assert!(s.contains(cell), "{theme}: {cell} missing\n{s}");
        }
        // Slack's two kinds are under Slack.
        let slack = s.lines().position(|l| l.contains("││ Slack")).unwrap();
        let next = s.lines().nth(slack + 1).unwrap();
        assert!(
            next.contains("sess 1L") && next.contains("apikey 1L"),
            "{s}"
        );
    }
    // Wide enough, one column per kind.
    let m = every_kind();
    let s = text(&render(&m, 160, 30));
    let header = s
        .lines()
        .find(|l| l.contains("app ") && l.contains("open"))
        .unwrap();
    for k in GrantKind::ALL {
        assert!(header.contains(super::view::kind_short(k)), "{header}");
    }
}

/// The screen's text inside a popup's borders, rows joined.
fn popup_text(s: &str) -> String {
    s.lines()
        .filter_map(|l| {
            let a = l.find('│')?;
            let b = l.rfind('│')?;
            (b > a).then(|| l[a + '│'.len_utf8()..b].trim().to_string())
        })
        .collect::<Vec<_>>()
        .join("")
}

#[test]
fn help_has_a_legend_of_kinds_and_states_and_scrolls() {
    let mut m = model_with(false, "mono");
    update(&mut m, ch('?'));
    let mut seen = String::new();
    for _ in 0..40 {
        seen.push_str(&text(&render(&m, 80, 24)));
        update(&mut m, ch('j'));
    }
    for k in GrantKind::ALL {
        let short = super::view::kind_short(k);
        assert!(
            seen.contains(&format!("{short:<8}{}", k.as_str())),
            "{short} {k} missing"
        );
    }
    for (letter, name) in [
        ("F", "failed"),
        ("U", "unconfirmed"),
        ("L", "live"),
        ("R", "removing"),
        ("M", "manual"),
        ("V", "verified"),
        ("A", "acknowledged"),
    ] {
        assert!(
            seen.contains(&format!("{letter}  {name}")),
            "{letter} {name}"
        );
    }
    let Some(Dialog::Help { scroll }) = m.dialog else {
        panic!()
    };
    assert!(scroll > 0 && scroll == m.popup_max_scroll.get(), "{scroll}");
    update(&mut m, key(KeyCode::PageUp));
    update(&mut m, key(KeyCode::PageUp));
    update(&mut m, key(KeyCode::PageUp));
    assert_eq!(m.dialog, Some(Dialog::Help { scroll: 0 }));
}

#[test]
fn the_exported_report_path_is_shown_whole() {
    let mut m = model_with(false, "default");
    let path = "/home/someone.with.a.long.name/.local/share/offboard/reports/dana.whitfield@example.com-20260302T100000.md";
    update(
        &mut m,
        Action::Exported {
            email: "dana.whitfield@example.com".into(),
            result: Ok(path.into()),
        },
    );
    let s = text(&render(&m, 80, 24));
    assert!(popup_text(&s).contains(path), "{s}");
    assert!(s.contains("Evidence report written"), "{s}");
    update(&mut m, key(KeyCode::Esc));
    assert!(m.dialog.is_none());
}

#[test]
fn the_grant_detail_scrolls_to_the_whole_reason_and_fix() {
    let mut m = model_with(false, "default");
    in_google(&mut m);
    update(&mut m, ch('g'));
    let long = "the app refused: ".to_string()
        + &"this user owns records that must move first ".repeat(30);
    let fix = "Reassign the Default Case Owner in Setup, Support Settings, then deactivate again FINAL-WORD";
    update(
        &mut m,
        Action::Engine(Event::State {
            email: "marcus.reyes@example.com".into(),
            key: "google/token:f".into(),
            state: GrantState::Failed {
                reason: format!("{long}; manual step: {fix}"),
            },
            at: t0(),
        }),
    );
    update(&mut m, key(KeyCode::Enter));
    let first = text(&render(&m, 80, 24));
    assert!(first.contains("j/k PgUp/PgDn"), "{first}");
    assert!(!first.contains("FINAL-WORD"), "{first}");
    update(&mut m, key(KeyCode::PageDown));
    update(&mut m, key(KeyCode::PageDown));
    let last = text(&render(&m, 80, 24));
    assert!(
        popup_text(&last).contains("deactivate again FINAL-WORD"),
        "{last}"
    );
    update(&mut m, ch('k'));
    let Some(Dialog::GrantDetail { scroll, .. }) = &m.dialog else {
        panic!()
    };
    assert_eq!(*scroll + 1, m.popup_max_scroll.get());
}

#[test]
fn open_grants_come_first_and_filters_take_not_and_or() {
    let mut m = every_kind();
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Enter));
    let labels = |m: &Model| -> Vec<String> {
        let l = m.selected().unwrap();
        m.grant_view
            .iter()
            .map(|&i| l.grants[i].grant.label.clone())
            .collect()
    };
    let all = labels(&m);
    assert_eq!(all.len(), 12);
    assert_eq!(all[0], "account grant", "the failed one first: {all:?}");
    assert_eq!(all[11], "session grant", "the verified one last: {all:?}");
    update(&mut m, ch('/'));
    typed(&mut m, "group|license");
    assert_eq!(labels(&m), vec!["license grant", "group grant"]);
    update(&mut m, key(KeyCode::Esc));
    update(&mut m, ch('/'));
    typed(&mut m, "!oauth_grant|!api_key");
    let v = labels(&m);
    assert_eq!(v.len(), 10);
    assert!(
        !v.iter()
            .any(|l| l.contains("oauth") || l.contains("api_key"))
    );
    update(&mut m, key(KeyCode::Enter));
    update(&mut m, key(KeyCode::Esc));
    // o: open only, and back.
    update(&mut m, ch('o'));
    assert_eq!(m.filter_grants, "open");
    assert_eq!(labels(&m).len(), 11);
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("/open"), "{s}");
    update(&mut m, ch('o'));
    assert_eq!(labels(&m).len(), 12);
    // The cursor stays on its grant when the order changes.
    update(&mut m, ch('j'));
    let on = m.selected_grant().unwrap().key.clone();
    update(
        &mut m,
        Action::Engine(Event::State {
            email: "marcus.reyes@example.com".into(),
            key: "google/g0".into(),
            state: GrantState::Verified { at: t0() },
            at: t0(),
        }),
    );
    assert_eq!(m.selected_grant().unwrap().key, on);
}

#[test]
fn rows_below_the_fold_are_announced() {
    let mut m = model_with(false, "default");
    let l = &mut m.leavers[1];
    for i in 0..40 {
        l.grants.push(row(
            grant(
                "google",
                &format!("t{i}"),
                GrantKind::OauthGrant,
                &format!("App {i}"),
            ),
            GrantState::Live,
        ));
    }
    in_google(&mut m);
    let s = text(&render(&m, 80, 24));
    assert!(s.contains(" 1-11/45 "), "{s}");
    assert!(s.contains("↓"), "{s}");
    update(&mut m, ch('G'));
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("-45/45"), "{s}");
    assert!(s.contains("↑"), "{s}");
}

#[test]
fn the_activity_pane_follows_wraps_and_does_not_repeat_lookups() {
    let mut m = model_with(false, "default");
    update(&mut m, ch('j'));
    let email = "marcus.reyes@example.com";
    let n = m.activity.len();
    for _ in 0..3 {
        update(
            &mut m,
            Action::Engine(Event::Discovering {
                email: email.into(),
                connector: "slack".into(),
            }),
        );
        update(
            &mut m,
            Action::Engine(Event::Lookup {
                email: email.into(),
                connector: "slack".into(),
                lookup: Lookup::NotFound,
            }),
        );
    }
    assert_eq!(m.activity.len(), n + 2, "{:?}", m.activity);
    // A long line wraps: every word on screen.
    let long = "slack: ".to_string() + &"word ".repeat(30) + "LAST";
    m.log(Level::Warn, long);
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("LAST"), "{s}");
    // Scrolled back, new lines do not move the view; a new run follows.
    update(&mut m, key(KeyCode::Tab));
    update(&mut m, key(KeyCode::Tab));
    assert_eq!(m.focus, Focus::Activity);
    update(&mut m, ch('k'));
    update(&mut m, ch('k'));
    assert_eq!(m.activity_back, 2);
    m.log(Level::Info, "newer");
    assert_eq!(m.activity_back, 3);
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("paused 3 back; G follows"), "{s}");
    update(&mut m, key(KeyCode::Esc));
    update(&mut m, ch('R'));
    typed(&mut m, email);
    let fx = update(&mut m, key(KeyCode::Enter));
    assert!(matches!(fx[..], [Effect::Revoke { .. }]), "{fx:?}");
    assert_eq!(m.activity_back, 0);
}

#[test]
fn queue_rows_are_cut_with_an_ellipsis_at_a_boundary() {
    assert_eq!(
        super::view::ellipsize("sam.okafor@partner.example.net", 28, "…"),
        "sam.okafor@partner.example…"
    );
    assert_eq!(
        super::view::ellipsize("3 live, 1 app unknown", 16, "…"),
        "3 live, 1 app…"
    );
    assert_eq!(super::view::ellipsize("short", 16, "…"), "short");
    let mut m = model_with(false, "default");
    m.leavers.push(LeaverRow::new(
        "someone.with.a.very.long.name@partner.example.net",
    ));
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("someone.with.a.very.long…"), "{s}");
}

#[test]
fn an_interrupted_revoke_resumes_after_discovery() {
    for read_only in [false, true] {
        let (mut m, _) = Model::new("ops", read_only, false, ThemeSet::builtin(false), "default");
        let mut l = LeaverRow::new("dana@example.com");
        l.resume = vec!["google/token:a".into(), "google/token:b".into()];
        l.discovering = true;
        m.leavers.push(l);
        let mut snap = CaseSnapshot {
            email: "dana@example.com".into(),
            ..Default::default()
        };
        snap.grants.push(row(
            grant("google", "token:a", GrantKind::OauthGrant, "A"),
            GrantState::Revoking,
        ));
        snap.grants.push(row(
            grant("google", "token:b", GrantKind::OauthGrant, "B"),
            GrantState::Verified { at: t0() },
        ));
        let fx = update(
            &mut m,
            Action::Discovered {
                email: "dana@example.com".into(),
                result: Ok(snap),
                health: vec![],
            },
        );
        let revokes: Vec<&Effect> = fx
            .iter()
            .filter(|e| matches!(e, Effect::Revoke { .. }))
            .collect();
        if read_only {
            assert!(revokes.is_empty());
            assert!(
                m.activity
                    .iter()
                    .any(|a| a.text.contains("without --read-only"))
            );
        } else {
            assert_eq!(
                revokes,
                vec![&Effect::Revoke {
                    email: "dana@example.com".into(),
                    scope: RevokeScope {
                        keys: vec!["google/token:a".into(), "google/token:b".into()],
                        ..Default::default()
                    }
                }]
            );
            assert!(m.leavers[0].revoking && m.leavers[0].resume.is_empty());
            assert!(
                m.activity
                    .iter()
                    .any(|a| a.text.contains("resuming the interrupted revoke (1 of 2"))
            );
        }
    }
}

#[test]
fn the_status_line_wraps_a_long_manual_step_and_cuts_at_a_word() {
    let mut m = model_with(false, "default");
    let l = &mut m.leavers[1];
    let manual = l.grants.iter_mut().find(|g| g.grant.is_manual()).unwrap();
    manual.grant.revocation = Revocation::Manual {
        instructions: "Hand over the apps and bots this person installed: add a new collaborator or owner for each app (app settings > Collaborators), re-authorise its tokens under a service owner, then confirm the integration still works.".into(),
    };
    update(&mut m, ch('j'));
    update(&mut m, ch(':'));
    typed(&mut m, "app slack");
    update(&mut m, key(KeyCode::Enter));
    let s = text(&render(&m, 80, 24));
    assert!(
        s.contains("  manual: Hand over the apps and bots this person installed: add a new"),
        "{s}"
    );
    let next = s
        .lines()
        .skip_while(|l| !l.contains("manual: Hand over"))
        .nth(1)
        .unwrap();
    assert!(next.contains("collaborator or owner for each app"), "{s}");
    assert!(next.trim_end_matches([' ', '│']).ends_with('…'), "{next}");
}

#[test]
fn ascii_mode_stays_ascii_in_every_new_view() {
    for mut m in states_to_draw() {
        m.symbols = Symbols { ascii: true };
        for (w, h) in [(80, 24), (30, 8), (120, 40)] {
            let s = text(&render(&m, w, h));
            assert!(s.is_ascii(), "{w}x{h}:\n{s}");
        }
    }
}

#[test]
fn queue_shows_due_and_overdue_leavers_with_overdue_open_access_highlighted() {
    let mut m = model_with(false, "default");
    m.leavers[0].exit_at = Some(t0() - chrono::Duration::hours(3));
    m.leavers[1].exit_at = Some(t0() + chrono::Duration::hours(2));
    let buf = render(&m, 160, 40);
    let screen = text(&buf);
    let (x, y) = find(&buf, "overdue 3h: still open").unwrap_or_else(|| panic!("{screen}"));
    let danger = m.theme.style(Role::Danger);
    assert_eq!(buf[(x, y)].fg, danger.fg.unwrap_or_default(), "{screen}");
    let (x, y) = find(&buf, "due in 2h").unwrap_or_else(|| panic!("{screen}"));
    assert_ne!(buf[(x, y)].fg, danger.fg.unwrap_or_default());
    assert!(!screen.contains("due in 2h: still open"));
}

fn command(m: &mut Model, cmd: &str) -> Vec<Effect> {
    update(m, ch(':'));
    typed(m, cmd);
    update(m, key(KeyCode::Enter))
}

#[test]
fn auto_is_off_by_default_and_runs_the_policy_once_a_minute_when_on() {
    let mut m = model_with(false, "default");
    m.leavers[0].discovering = true;
    assert!(!m.auto);
    assert!(!text(&render(&m, 80, 24)).contains("AUTO"));
    // Off: ticks never run the policy.
    assert!(!update(&mut m, Action::Tick(t0())).contains(&Effect::AutoRun));

    command(&mut m, "auto on");
    assert!(m.auto);
    let head = text(&render(&m, 80, 24));
    assert!(head.lines().next().unwrap().contains("AUTO"), "{head}");
    let fx = update(&mut m, Action::Tick(t0()));
    assert_eq!(fx.iter().filter(|f| **f == Effect::AutoRun).count(), 1);
    assert!(m.auto_running);
    // Not again while it runs, nor before the minute is up.
    let later = t0() + chrono::Duration::seconds(70);
    assert!(!update(&mut m, Action::Tick(later)).contains(&Effect::AutoRun));
    update(
        &mut m,
        Action::AutoRan {
            result: Ok(vec![
                "dana.whitfield@example.com: overdue 3h (exit time passed): revoked everything: 3 verified, 0 acknowledged, 0 left".into(),
            ]),
            cases: Vec::new(),
        },
    );
    assert!(!m.auto_running);
    assert!(
        m.activity
            .iter()
            .any(|l| l.text.starts_with("auto: dana.whitfield"))
    );
    let soon = t0() + chrono::Duration::seconds(30);
    assert!(!update(&mut m, Action::Tick(soon)).contains(&Effect::AutoRun));
    assert!(update(&mut m, Action::Tick(later)).contains(&Effect::AutoRun));
    update(
        &mut m,
        Action::AutoRan {
            result: Err("no roster: set [roster] path in the config (a file)".into()),
            cases: Vec::new(),
        },
    );
    assert!(m.message.as_ref().unwrap().1.contains("no roster"));

    command(&mut m, "auto off");
    assert!(!m.auto);
    let much_later = t0() + chrono::Duration::seconds(600);
    assert!(!update(&mut m, Action::Tick(much_later)).contains(&Effect::AutoRun));
    assert!(!text(&render(&m, 80, 24)).contains("AUTO"));

    // Read-only: refused.
    let mut ro = model_with(true, "default");
    command(&mut ro, "auto on");
    assert!(!ro.auto);
}

#[test]
fn handover_names_whom_the_data_goes_to() {
    let mut m = model_with(false, "default");
    let fx = command(&mut m, "handover Boss@Example.com");
    assert_eq!(
        fx,
        vec![Effect::HandOver {
            email: "dana.whitfield@example.com".into(),
            to: "boss@example.com".into(),
        }]
    );
    assert_eq!(m.leavers[0].manager.as_deref(), Some("boss@example.com"));
    assert!(command(&mut m, "handover nobody").is_empty());
    assert!(
        m.message
            .as_ref()
            .unwrap()
            .1
            .contains("not an email address")
    );
}

#[test]
fn takeover_asks_for_the_selected_leaver_and_reports_the_answer() {
    let mut m = model_with(false, "default");
    let fx = command(&mut m, "takeover");
    assert_eq!(
        fx,
        vec![Effect::TakeOver {
            email: "dana.whitfield@example.com".into(),
        }]
    );
    update(
        &mut m,
        Action::TookOver {
            email: "dana.whitfield@example.com".into(),
            result: Err("held by bob@jump2 since \x1b[31mnow".into()),
        },
    );
    let (level, text) = m.message.clone().unwrap();
    assert_eq!(level, Level::Error);
    assert!(
        text.contains("take-over failed: held by bob@jump2"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "sanitised: {text}");
    // Read-only: refused.
    let mut ro = model_with(true, "default");
    assert!(command(&mut ro, "takeover").is_empty());
}

/// The batch dialog before its dry run (0), with it (1), and the batch
/// running (2).
fn batch_model(stage: u8) -> Model {
    let mut m = model_with(false, "default");
    update(&mut m, ch(' '));
    update(&mut m, ch(' '));
    update(&mut m, ch('B'));
    if stage >= 1 {
        update(
            &mut m,
            Action::BatchPrepared {
                emails: vec![
                    "dana.whitfield@example.com".into(),
                    "marcus.reyes@example.com".into(),
                ],
                result: Ok(plan_of_two()),
            },
        );
    }
    if stage >= 2 {
        typed(&mut m, "2");
        update(&mut m, key(KeyCode::Enter));
    }
    m
}

fn plan_of_two() -> BatchPlan {
    BatchPlan {
        totals: vec![
            ("google".into(), "account".into(), 2),
            ("google".into(), "oauth_grant".into(), 3),
            ("slack".into(), "session".into(), 2),
        ],
        requests: [("google".to_string(), 5), ("slack".to_string(), 2)].into(),
        reasons: vec!["2 leavers is more than [batch] max_batch = 1".into()],
        quotas: [("google".to_string(), 40.0), ("slack".to_string(), 2.0)].into(),
    }
}

#[test]
fn picked_leavers_run_as_one_batch_after_the_dry_run_and_the_exact_count() {
    let mut m = model_with(false, "default");
    // Nothing picked: B says how.
    assert!(update(&mut m, ch('B')).is_empty());
    assert!(
        m.message
            .as_ref()
            .unwrap()
            .1
            .contains("pick leavers with Space")
    );
    // Space in the queue picks the leaver and moves on.
    update(&mut m, ch(' '));
    assert_eq!(m.queue_sel, 1);
    update(&mut m, ch(' '));
    assert_eq!(m.picked.len(), 2);
    assert!(text(&render(&m, 80, 24)).contains("Leavers (2, 2 picked)"));
    let emails = vec![
        "dana.whitfield@example.com".to_string(),
        "marcus.reyes@example.com".to_string(),
    ];
    assert_eq!(
        update(&mut m, ch('B')),
        vec![Effect::BatchPrepare {
            emails: emails.clone()
        }]
    );
    // Enter before the dry run is in does nothing.
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    update(
        &mut m,
        Action::BatchPrepared {
            emails: emails.clone(),
            result: Ok(plan_of_two()),
        },
    );
    let s = text(&render(&m, 80, 24));
    assert!(s.contains("Dry run for 2 leaver(s)"), "{s}");
    assert!(s.contains("google oauth_grant 3"), "{s}");
    assert!(s.contains("over the cap: 2 leavers is more than"), "{s}");
    assert!(s.contains("Type 2 (the number of leavers)"), "{s}");
    // A wrong number (or letters) goes nowhere.
    typed(&mut m, "3x");
    assert!(update(&mut m, key(KeyCode::Enter)).is_empty());
    assert!(m.message.as_ref().unwrap().1.contains("type 2"));
    assert!(m.batch.is_none());
    update(&mut m, key(KeyCode::Backspace));
    typed(&mut m, "2");
    assert_eq!(
        update(&mut m, key(KeyCode::Enter)),
        vec![Effect::BatchRun {
            emails: emails.clone(),
            confirm: 2
        }]
    );
    assert!(m.dialog.is_none());
    assert!(m.picked.is_empty());
    assert!(m.leavers.iter().all(|l| l.revoking));
    // Progress: a bar per app and overall, with the time left from the quota.
    for i in 0..5 {
        update(
            &mut m,
            Action::Engine(Event::ApiAnswer {
                email: "dana.whitfield@example.com".into(),
                key: format!("google/token:{i}"),
                answer: "accepted".into(),
            }),
        );
    }
    let s = text(&render(&m, 100, 30));
    assert!(s.contains("BATCH 0/2"), "{s}");
    let google = s
        .lines()
        .find(|l| l.contains("google") && l.contains('['))
        .unwrap();
    assert!(google.contains("5/5") && google.contains("done"), "{s}");
    let slack = s
        .lines()
        .find(|l| l.contains("slack") && l.contains('['))
        .unwrap();
    assert!(slack.contains("0/2") && slack.contains("~1s left"), "{s}");
    assert!(slack.contains("(quota 2/s)"), "{s}");
    assert!(
        s.lines()
            .any(|l| l.contains("overall") && l.contains("5/7")),
        "{s}"
    );
    // The breaker paused it: said so, and who was not started.
    update(
        &mut m,
        Action::BatchFinished {
            result: Ok(crate::fleet::batch::Outcome {
                finished: Vec::new(),
                not_started: vec!["marcus.reyes@example.com".into()],
                paused: Some("slack: 5 of its last 20 requests failed or were refused".into()),
            }),
            cases: Vec::new(),
        },
    );
    assert!(m.leavers.iter().all(|l| !l.revoking));
    let s = text(&render(&m, 100, 30));
    assert!(s.contains("PAUSED by the circuit breaker: slack"), "{s}");
    assert!(s.contains("not started: marcus.reyes@example.com"), "{s}");
    assert!(m.message.as_ref().unwrap().1.starts_with("batch PAUSED"));
    // Esc in the queue closes the finished batch's panel.
    update(&mut m, key(KeyCode::Esc));
    assert!(m.batch.is_none());
    // Read-only: no batch.
    let mut ro = model_with(true, "default");
    update(&mut ro, ch(' '));
    assert!(update(&mut ro, ch('B')).is_empty());
    assert!(ro.picked.is_empty());
}
