//! The console on a TestBackend whose screen a test can read while the real
//! loop runs, and scripted keys.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use futures::channel::mpsc;
use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};

/// A TestBackend whose last flushed screen can be read while the loop runs.
pub struct SharedScreen {
    pub inner: TestBackend,
    pub text: Arc<Mutex<String>>,
}

impl Backend for SharedScreen {
    type Error = std::convert::Infallible;

    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.inner.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, p: P) -> Result<(), Self::Error> {
        self.inner.set_cursor_position(p)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.inner.clear()
    }
    fn clear_region(&mut self, t: ClearType) -> Result<(), Self::Error> {
        self.inner.clear_region(t)
    }
    fn size(&self) -> Result<Size, Self::Error> {
        self.inner.size()
    }
    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.inner.window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush()?;
        let buf = self.inner.buffer();
        let text: String = (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect();
        *self.text.lock().unwrap() = text;
        Ok(())
    }
}

pub struct Keys(pub mpsc::UnboundedSender<io::Result<TermEvent>>);

impl Keys {
    pub fn key(&self, c: KeyCode) {
        self.0
            .unbounded_send(Ok(TermEvent::Key(KeyEvent::new(c, KeyModifiers::NONE))))
            .unwrap();
    }
    pub fn text(&self, s: &str) {
        for c in s.chars() {
            self.key(KeyCode::Char(c));
        }
    }
    pub fn command(&self, s: &str) {
        self.key(KeyCode::Char(':'));
        self.text(s);
        self.key(KeyCode::Enter);
    }
    pub fn paste(&self, s: &str) {
        self.0
            .unbounded_send(Ok(TermEvent::Paste(s.to_string())))
            .unwrap();
    }
}

pub async fn screen_until(
    screen: &Arc<Mutex<String>>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    super::wait_for(Duration::from_secs(20), what, || {
        let s = screen.lock().unwrap().clone();
        let ok = pred(&s);
        async move { ok.then_some(s) }
    })
    .await
}
