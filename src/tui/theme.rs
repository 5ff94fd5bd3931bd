//! Themes: semantic roles mapped to styles. Built-in themes live in the
//! top-level `themes/` folder and are compiled in; a file of the same name in
//! the config directory's `themes/` overrides one. Loading never fails: a bad
//! theme is reported and the default used.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// The themes compiled into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("mono", include_str!("../../themes/mono.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// Every semantic role a view may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Live,
    Removing,
    Verified,
    Unconfirmed,
    Failed,
    Manual,
    Acknowledged,
    Danger,
    Selection,
    Muted,
    Accent,
    Header,
    Border,
    FocusBorder,
    Mark,
    Ok,
    Warning,
    Error,
    Text,
}

impl Role {
    pub const ALL: [Role; 19] = [
        Role::Live,
        Role::Removing,
        Role::Verified,
        Role::Unconfirmed,
        Role::Failed,
        Role::Manual,
        Role::Acknowledged,
        Role::Danger,
        Role::Selection,
        Role::Muted,
        Role::Accent,
        Role::Header,
        Role::Border,
        Role::FocusBorder,
        Role::Mark,
        Role::Ok,
        Role::Warning,
        Role::Error,
        Role::Text,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Live => "live",
            Role::Removing => "removing",
            Role::Verified => "verified",
            Role::Unconfirmed => "unconfirmed",
            Role::Failed => "failed",
            Role::Manual => "manual",
            Role::Acknowledged => "acknowledged",
            Role::Danger => "danger",
            Role::Selection => "selection",
            Role::Muted => "muted",
            Role::Accent => "accent",
            Role::Header => "header",
            Role::Border => "border",
            Role::FocusBorder => "focus_border",
            Role::Mark => "mark",
            Role::Ok => "ok",
            Role::Warning => "warning",
            Role::Error => "error",
            Role::Text => "text",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    styles: [Style; Role::ALL.len()],
}

impl Theme {
    pub fn style(&self, role: Role) -> Style {
        self.styles[role as usize]
    }

    /// The built-in default theme (ANSI colour names only).
    pub fn default_theme() -> Theme {
        parse("default", BUILTIN[0].1, None, true).expect("the built-in default theme parses")
    }

    pub fn mono() -> Theme {
        parse("mono", BUILTIN[1].1, None, true).expect("the built-in mono theme parses")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    roles: BTreeMap<String, RawStyle>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStyle {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    modifiers: Vec<String>,
}

/// Parses a theme. Roles it leaves out take the default theme's style
/// (`base`), or no style when there is no base. `truecolor`: keep hex colours
/// as RGB; otherwise they become the nearest ANSI colour.
pub fn parse(
    name: &str,
    text: &str,
    base: Option<&Theme>,
    truecolor: bool,
) -> Result<Theme, String> {
    let raw: RawTheme = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    let mut styles = match base {
        Some(b) => b.styles,
        None => [Style::default(); Role::ALL.len()],
    };
    for (key, raw_style) in &raw.roles {
        let role = Role::ALL
            .into_iter()
            .find(|r| r.name() == key)
            .ok_or_else(|| {
                format!(
                    "unknown role `{key}` (roles: {})",
                    Role::ALL.map(Role::name).join(", ")
                )
            })?;
        let mut s = Style::default();
        if let Some(fg) = &raw_style.fg {
            s = s.fg(parse_color(fg, truecolor).map_err(|e| format!("roles.{key}.fg: {e}"))?);
        }
        if let Some(bg) = &raw_style.bg {
            s = s.bg(parse_color(bg, truecolor).map_err(|e| format!("roles.{key}.bg: {e}"))?);
        }
        for m in &raw_style.modifiers {
            s = s.add_modifier(
                parse_modifier(m).map_err(|e| format!("roles.{key}.modifiers: {e}"))?,
            );
        }
        styles[role as usize] = s;
    }
    Ok(Theme {
        name: name.to_string(),
        styles,
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_modifier(m: &str) -> Result<Modifier, String> {
    Ok(match m.trim().to_ascii_lowercase().as_str() {
        "bold" => Modifier::BOLD,
        "dim" => Modifier::DIM,
        "italic" => Modifier::ITALIC,
        "underlined" | "underline" => Modifier::UNDERLINED,
        "slow_blink" => Modifier::SLOW_BLINK,
        "reversed" | "reverse" => Modifier::REVERSED,
        "crossed_out" => Modifier::CROSSED_OUT,
        other => {
            return Err(format!(
                "unknown modifier `{other}` (expected bold, dim, italic, underlined, slow_blink, reversed, crossed_out)"
            ));
        }
    })
}

const ANSI: [(&str, Color, (u8, u8, u8)); 16] = [
    ("black", Color::Black, (0, 0, 0)),
    ("red", Color::Red, (205, 0, 0)),
    ("green", Color::Green, (0, 205, 0)),
    ("yellow", Color::Yellow, (205, 205, 0)),
    ("blue", Color::Blue, (0, 0, 238)),
    ("magenta", Color::Magenta, (205, 0, 205)),
    ("cyan", Color::Cyan, (0, 205, 205)),
    ("gray", Color::Gray, (229, 229, 229)),
    ("darkgray", Color::DarkGray, (127, 127, 127)),
    ("lightred", Color::LightRed, (255, 0, 0)),
    ("lightgreen", Color::LightGreen, (0, 255, 0)),
    ("lightyellow", Color::LightYellow, (255, 255, 0)),
    ("lightblue", Color::LightBlue, (92, 92, 255)),
    ("lightmagenta", Color::LightMagenta, (255, 0, 255)),
    ("lightcyan", Color::LightCyan, (0, 255, 255)),
    ("white", Color::White, (255, 255, 255)),
];

/// An ANSI colour name, `reset`, or `#rgb` / `#rrggbb`. Never panics.
pub fn parse_color(s: &str, truecolor: bool) -> Result<Color, String> {
    let t = s.trim().to_ascii_lowercase().replace(['_', '-', ' '], "");
    if t == "reset" {
        return Ok(Color::Reset);
    }
    let t = match t.as_str() {
        "grey" => "gray".to_string(),
        "darkgrey" => "darkgray".to_string(),
        _ => t,
    };
    if let Some((_, c, _)) = ANSI.iter().find(|(n, _, _)| *n == t) {
        return Ok(*c);
    }
    if let Some(hex) = t.strip_prefix('#') {
        let digits: Vec<u8> = hex
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("`{s}` is not a hex colour"))?;
        let (r, g, b) = match digits.as_slice() {
            [r, g, b] => (r * 17, g * 17, b * 17),
            [r1, r2, g1, g2, b1, b2] => (r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2),
            _ => return Err(format!("`{s}`: expected #rgb or #rrggbb")),
        };
        return Ok(if truecolor {
            Color::Rgb(r, g, b)
        } else {
            nearest_ansi(r, g, b)
        });
    }
    Err(format!(
        "unknown colour `{s}` (expected an ANSI name such as red, darkgray, lightblue, or #rrggbb)"
    ))
}

/// The closest of the 16 ANSI colours.
pub fn nearest_ansi(r: u8, g: u8, b: u8) -> Color {
    let d = |(x, y, z): (u8, u8, u8)| {
        let dr = i32::from(r) - i32::from(x);
        let dg = i32::from(g) - i32::from(y);
        let db = i32::from(b) - i32::from(z);
        dr * dr + dg * dg + db * db
    };
    ANSI.iter()
        .min_by_key(|(_, _, rgb)| d(*rgb))
        .map(|(_, c, _)| *c)
        .unwrap_or(Color::Reset)
}

/// Whether the terminal says it renders 24-bit colour.
pub fn truecolor_from_env() -> bool {
    std::env::var("COLORTERM")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "truecolor" | "24bit"))
        .unwrap_or(false)
}

/// Every theme the console can switch to: the built-ins, overridden or
/// extended by `*.toml` files in `<config dir>/themes/`. A file that fails
/// to parse is kept as an error, reported when chosen.
#[derive(Debug, Clone)]
pub struct ThemeSet {
    themes: BTreeMap<String, Result<Theme, String>>,
}

impl ThemeSet {
    pub fn builtin(truecolor: bool) -> ThemeSet {
        Self::load(None, truecolor)
    }

    pub fn load(config_dir: Option<&Path>, truecolor: bool) -> ThemeSet {
        let default = Theme::default_theme();
        let mut themes = BTreeMap::new();
        for (name, text) in BUILTIN {
            let base = (*name != "mono").then_some(&default);
            themes.insert(name.to_string(), parse(name, text, base, truecolor));
        }
        if let Some(dir) = config_dir.map(|d| d.join("themes"))
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue;
                }
                let Some(name) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                else {
                    continue;
                };
                let parsed = match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let base = (name != "mono").then_some(&default);
                        parse(&name, &text, base, truecolor)
                            .map_err(|e| format!("{}: {e}", path.display()))
                    }
                    Err(e) => Err(format!("{}: {e}", path.display())),
                };
                themes.insert(name, parsed);
            }
        }
        ThemeSet { themes }
    }

    /// The theme of this name, or the default with a message saying why.
    pub fn get(&self, name: &str) -> (Theme, Option<String>) {
        match self.themes.get(name) {
            Some(Ok(t)) => (t.clone(), None),
            Some(Err(e)) => (
                self.default_theme(),
                Some(format!("theme `{name}`: {e}; using default")),
            ),
            None => (
                self.default_theme(),
                Some(format!(
                    "no theme `{name}` (themes: {}); using default",
                    self.names().join(", ")
                )),
            ),
        }
    }

    fn default_theme(&self) -> Theme {
        match self.themes.get("default") {
            Some(Ok(t)) => t.clone(),
            _ => Theme::default_theme(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.themes.keys().cloned().collect()
    }
}

/// The theme to start with: the flag, else the config, else `mono` under
/// `NO_COLOR`, else `default`.
pub fn initial_name(flag: Option<&str>, config: Option<&str>, no_color: bool) -> String {
    flag.or(config)
        .map(str::to_string)
        .unwrap_or_else(|| if no_color { "mono" } else { "default" }.to_string())
}

/// `NO_COLOR` set to a non-empty value (no-color.org).
pub fn no_color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        let set = ThemeSet::builtin(false);
        for (name, _) in BUILTIN {
            let (t, msg) = set.get(name);
            assert!(msg.is_none(), "{name}: {msg:?}");
            assert_eq!(t.name, *name);
        }
    }

    #[test]
    fn default_uses_ansi_names_only() {
        let t = Theme::default_theme();
        for r in Role::ALL {
            let s = t.style(r);
            for c in [s.fg, s.bg].into_iter().flatten() {
                assert!(!matches!(c, Color::Rgb(..) | Color::Indexed(_)), "{r:?}");
            }
        }
        assert_eq!(t.style(Role::Live).fg, Some(Color::Red));
    }

    #[test]
    fn mono_has_no_colours() {
        let t = ThemeSet::builtin(true).get("mono").0;
        for r in Role::ALL {
            let s = t.style(r);
            assert!(s.fg.is_none() && s.bg.is_none(), "{r:?} has a colour");
        }
        assert!(
            t.style(Role::Selection)
                .add_modifier
                .contains(Modifier::REVERSED)
        );
    }

    #[test]
    fn hex_colours_never_panic() {
        for s in [
            "#", "#f", "#ff", "#ffff", "#fffff", "#gggggg", "#ééé", "#1234567", "",
        ] {
            assert!(parse_color(s, true).is_err(), "{s}");
        }
        assert_eq!(parse_color("#fff", true), Ok(Color::Rgb(255, 255, 255)));
        assert_eq!(parse_color("#b00020", false), Ok(Color::Red));
        assert_eq!(parse_color("Dark_Gray", false), Ok(Color::DarkGray));
    }

    #[test]
    fn bad_theme_file_gives_message_and_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("themes")).unwrap();
        std::fs::write(
            dir.path().join("themes/broken.toml"),
            "[roles]\nlive = { fg = \"#12\" }\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("themes/junk.toml"), "not = [toml").unwrap();
        std::fs::write(
            dir.path().join("themes/light.toml"),
            "[roles]\nlive = { fg = \"blue\" }\n",
        )
        .unwrap();
        let set = ThemeSet::load(Some(dir.path()), false);
        let (t, msg) = set.get("broken");
        assert_eq!(t, Theme::default_theme());
        assert!(msg.unwrap().contains("roles.live.fg"));
        assert!(set.get("junk").1.is_some());
        let (light, msg) = set.get("light");
        assert!(msg.is_none());
        assert_eq!(light.style(Role::Live).fg, Some(Color::Blue));
        // Roles left out fall back to the default theme.
        assert_eq!(
            light.style(Role::Verified),
            Theme::default_theme().style(Role::Verified)
        );
        assert!(set.get("nope").1.unwrap().contains("no theme"));
    }

    #[test]
    fn no_color_picks_mono() {
        assert_eq!(initial_name(None, None, true), "mono");
        assert_eq!(initial_name(None, None, false), "default");
        assert_eq!(initial_name(Some("light"), Some("x"), true), "light");
    }
}
