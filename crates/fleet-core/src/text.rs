//! Text that came from outside (an operator's halt reason, a cluster's error message, a
//! file name in a commit) on its way to a terminal, a log line, an Event or a GitHub
//! commit status: it is data, never markup. Control characters would let it clear a
//! screen, move the cursor or start a forged log line, and bidirectional overrides would
//! let it show other text than it holds, so input is refused when it has them
//! ([`check`]) and output escapes them ([`escape`]).

use std::borrow::Cow;

/// Whether `c` steers a terminal or a reader rather than being read: the control
/// characters (C0 with newline and tab, DEL, C1), the line and paragraph separators, and
/// the bidirectional marks, embeddings, overrides and isolates.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [`is_unsafe`] character written as its Rust escape (`\n`, `\t`,
/// `\u{1b}`), so that what a reader sees is what the text holds, on one line. Borrowed when
/// there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Why a piece of user text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{chars} characters, at most {max}")]
    TooLong { chars: usize, max: usize },
    #[error("control character U+{code:04X} at character {at}: plain text on one line only")]
    Control { code: u32, at: usize },
}

/// `text` trimmed, if it is at most `max` characters of plain text on one line. Refused,
/// not cleaned: a client that sent an escape sequence learns so, and what is kept is
/// exactly what was sent.
pub fn check(text: &str, max: usize) -> Result<&str, TextError> {
    let text = text.trim();
    if let Some((at, c)) = text.chars().enumerate().find(|(_, c)| is_unsafe(*c)) {
        return Err(TextError::Control {
            code: u32::from(c),
            at: at + 1,
        });
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(TextError::TooLong { chars, max });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_shows_every_control_and_bidi_character_and_leaves_the_rest() {
        let cases = [
            (
                "plain text, ünïcode and emoji 🐘",
                "plain text, ünïcode and emoji 🐘",
            ),
            ("\u{1b}[2J\u{1b}[Hcleared", "\\u{1b}[2J\\u{1b}[Hcleared"),
            ("one\nINFO forged", "one\\nINFO forged"),
            ("a\r\tb\u{7f}", "a\\r\\tb\\u{7f}"),
            ("c1 \u{9b}31m", "c1 \\u{9b}31m"),
            ("bidi \u{202e}txt.exe", "bidi \\u{202e}txt.exe"),
            ("isolate \u{2066}x\u{2069}", "isolate \\u{2066}x\\u{2069}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
        ];
        for (input, shown) in cases {
            assert_eq!(escape(input), shown, "{input:?}");
            assert!(!escape(input).chars().any(is_unsafe), "{input:?}");
        }
        assert!(matches!(escape("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn check_takes_plain_text_trimmed_and_refuses_control_characters_and_length() {
        assert_eq!(check("  wait for the DBA  ", 20), Ok("wait for the DBA"));
        assert_eq!(check("", 20), Ok(""));
        // Trailing whitespace, newline included, is trimmed before the check.
        assert_eq!(check("fine\n", 20), Ok("fine"));
        assert_eq!(
            check("x\u{1b}[2J", 20),
            Err(TextError::Control { code: 0x1b, at: 2 })
        );
        assert_eq!(
            check("a\nb", 20),
            Err(TextError::Control { code: 0x0a, at: 2 })
        );
        assert_eq!(
            check("\u{202e}gnp.exe", 20),
            Err(TextError::Control {
                code: 0x202e,
                at: 1
            })
        );
        // Characters, not bytes.
        assert_eq!(check(&"é".repeat(20), 20), Ok("é".repeat(20).as_str()));
        assert_eq!(
            check(&"x".repeat(21), 20),
            Err(TextError::TooLong { chars: 21, max: 20 })
        );
        assert_eq!(
            TextError::Control { code: 0x1b, at: 2 }.to_string(),
            "control character U+001B at character 2: plain text on one line only"
        );
    }
}
