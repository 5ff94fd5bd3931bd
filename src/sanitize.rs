//! Text that comes from an API is untrusted. Everything shown on a terminal,
//! written to a log line or put into a report goes through [`clean`].

/// Replaces control characters (C0, DEL, C1), escape sequences and bidi
/// overrides with visible, inert text. ESC becomes `^[`, other C0 controls
/// become `^X`, C1 controls and bidi/format characters become `\u{..}`.
/// Newlines and tabs become a single space so that one value stays on one line.
pub fn clean(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '\u{1b}' => out.push_str("^["),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            '\u{7f}' => out.push_str("^?"),
            c if is_dangerous_format(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Like [`clean`], then cut to at most `max` characters (with an ellipsis).
pub fn clean_max(input: &str, max: usize) -> String {
    let cleaned = clean(input);
    if cleaned.chars().count() <= max {
        return cleaned;
    }
    let mut out: String = cleaned.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn is_dangerous_format(c: char) -> bool {
    let u = c as u32;
    (0x80..=0x9f).contains(&u)            // C1 controls (CSI = U+009B)
        || (0x202a..=0x202e).contains(&u) // bidi embeddings and overrides
        || (0x2066..=0x2069).contains(&u) // bidi isolates
        || u == 0x200e || u == 0x200f     // LRM, RLM
        || u == 0x061c                    // arabic letter mark
        || u == 0xfeff                    // BOM / zero width no-break space
        || (0xfff9..=0xfffb).contains(&u) // interlinear annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_sequences() {
        let evil = "Dana\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}gpj.exe\r\nnext";
        let c = clean(evil);
        assert!(!c.chars().any(|c| c.is_control()), "{c:?}");
        assert!(c.contains("^[[2J"));
        assert!(c.contains("^G"));
        assert!(c.contains("\\u{9b}"));
        assert!(c.contains("\\u{202e}"));
        assert!(c.starts_with("Dana"));
    }

    #[test]
    fn keeps_ordinary_text() {
        assert_eq!(clean("Zoë Ångström 北京"), "Zoë Ångström 北京");
    }

    #[test]
    fn cuts_long_text() {
        assert_eq!(clean_max("abcdef", 4), "abc…");
        assert_eq!(clean_max("abc", 4), "abc");
    }
}
