//! Render benchmark: one leaver with 10,000 grants, drill-down open, drawn on
//! a TestBackend. Reports the time per frame (target: at most 1 ms).

use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use offboard::model::{Grant, GrantKind, GrantState, Revocation, Risk};
use offboard::tui::model::{ConnectorRow, GrantRow, LeaverRow, Model};
use offboard::tui::theme::ThemeSet;
use offboard::tui::{Action, update, view};

fn main() {
    let (mut model, _) = Model::new("bench", false, false, ThemeSet::builtin(false), "default");
    model.connectors = vec![ConnectorRow::new(
        "google",
        "Google Workspace",
        Duration::from_secs(5),
    )];
    let mut leaver = LeaverRow::new("bench.leaver@example.com");
    leaver.discovered = true;
    let now = Utc::now();
    leaver.grants = (0..10_000)
        .map(|i| {
            let kind = GrantKind::ALL[i % GrantKind::ALL.len()];
            let g = Grant {
                connector: "google".into(),
                id: format!("token:{i}"),
                kind,
                label: format!("Third-party app number {i}"),
                details: format!(
                    "scopes: drive, gmail.readonly, calendar; client {i}.apps.googleusercontent.com"
                ),
                risk: Risk::Medium,
                revocation: Revocation::Api,
                since: None,
                phase: None,
                after: Vec::new(),
            };
            let state = match i % 4 {
                0 => GrantState::Live,
                1 => GrantState::Removed,
                2 => GrantState::Verified { at: now },
                _ => GrantState::Acknowledged {
                    at: now,
                    note: None,
                },
            };
            GrantRow {
                key: g.key(),
                grant: g,
                state,
                since_state: Some(now),
                answer: None,
            }
        })
        .collect();
    model.leavers = vec![leaver];
    let key = |c| Action::Key(KeyEvent::new(c, KeyModifiers::NONE));
    update(&mut model, key(KeyCode::Enter));
    update(&mut model, key(KeyCode::Enter));
    assert_eq!(model.grant_view.len(), 10_000, "drill-down open");
    update(&mut model, key(KeyCode::PageDown));

    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        // Warm up.
        for _ in 0..50 {
            terminal
                .draw(|f| view::draw(&model, f.area(), f.buffer_mut()))
                .unwrap();
        }
        let frames = 2000;
        let start = Instant::now();
        for i in 0..frames {
            // Move the selection so that every frame differs.
            update(
                &mut model,
                key(if i % 200 < 100 {
                    KeyCode::Char('j')
                } else {
                    KeyCode::Char('k')
                }),
            );
            terminal
                .draw(|f| view::draw(&model, f.area(), f.buffer_mut()))
                .unwrap();
        }
        let per = start.elapsed() / frames;
        let start = Instant::now();
        for _ in 0..frames {
            terminal
                .draw(|f| view::draw(&model, f.area(), f.buffer_mut()))
                .unwrap();
        }
        let draw_only = start.elapsed() / frames;
        println!(
            "render {w}x{h}, 10,000 grants: {:.1} µs per frame (draw only)",
            draw_only.as_secs_f64() * 1e6
        );
        println!(
            "render {w}x{h}, 10,000 grants in the drill-down: {:.1} µs per frame (update + draw) {}",
            per.as_secs_f64() * 1e6,
            if per <= Duration::from_millis(1) {
                "(target <= 1 ms: met)"
            } else {
                "(target <= 1 ms: MISSED)"
            }
        );
    }
}
