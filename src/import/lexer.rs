//! HAProxy's configuration grammar at the word level (its manual, "Quoting
//! and escaping"): one directive per line, words split on blanks, `#` starts
//! a comment, backslash escapes (`\ `, `\#`, `\\`, `\'`, `\"`, `\r`, `\n`,
//! `\t`, `\xNN`), weak quoting with `"` (escapes and `$VAR` still apply),
//! strong quoting with `'` (nothing is interpreted), and concatenation of
//! adjacent quoted and bare parts into one word.
//! Invariant: a line either yields its words exactly as HAProxy would
//! interpret them, or a `Rejection` naming the line, as HAProxy would refuse it.

use super::{Rejection, Skipped};

/// One non-empty directive line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// The words after quoting and escaping were resolved.
    pub words: Vec<String>,
    /// The line as written, without surrounding blanks or its comment, for
    /// messages.
    pub text: String,
}

impl Line {
    /// The word at `i`, or `""` past the end.
    pub fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }
}

/// Why a line yields no words.
#[derive(Debug, PartialEq, Eq)]
enum Unread {
    /// HAProxy refuses the line.
    Malformed(String),
    /// Valid for HAProxy, but its value is only known where it runs.
    Environment(String),
}

/// Splits `source` into directive lines; blank and comment-only lines are
/// left out. Every malformed line is reported; a line that reads the
/// environment is skipped.
pub fn lines(source: &str) -> (Vec<Line>, Vec<Rejection>, Vec<Skipped>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in source.lines().enumerate() {
        let number = i + 1;
        match words(raw) {
            Ok((words, end)) if !words.is_empty() => lines.push(Line {
                number,
                words,
                text: raw[..end].trim().to_owned(),
            }),
            Ok(_) => {}
            Err(Unread::Malformed(message)) => errors.push(Rejection {
                line: number,
                message,
            }),
            Err(Unread::Environment(reason)) => skipped.push(Skipped {
                line: number,
                text: raw.trim().to_owned(),
                reason,
            }),
        }
    }
    (lines, errors, skipped)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Weak,
    Strong,
}

/// The words of one line, and the byte offset where its comment starts (or
/// its length).
fn words(line: &str) -> Result<(Vec<String>, usize), Unread> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started: `""` is an empty word, not nothing.
    let mut in_word = false;
    let mut quote = Quote::None;
    let mut chars = line.char_indices().peekable();
    let mut end = line.len();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Quote::Strong, '\'') => quote = Quote::None,
            (Quote::Strong, c) => word.push(c),
            (Quote::Weak, '"') => quote = Quote::None,
            (Quote::None, '"') => {
                quote = Quote::Weak;
                in_word = true;
            }
            (Quote::None, '\'') => {
                quote = Quote::Strong;
                in_word = true;
            }
            (_, '\\') => {
                let Some((_, next)) = chars.next() else {
                    return Err(Unread::Malformed(
                        "a backslash ends the line (HAProxy has no line continuation)".into(),
                    ));
                };
                in_word = true;
                match next {
                    ' ' | '#' | '\\' | '\'' | '"' => word.push(next),
                    '$' if quote == Quote::Weak => word.push('$'),
                    'r' => word.push('\r'),
                    'n' => word.push('\n'),
                    't' => word.push('\t'),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        match u8::from_str_radix(&hex, 16) {
                            Ok(byte) if hex.len() == 2 => word.push(char::from(byte)),
                            _ => {
                                return Err(Unread::Malformed(format!(
                                    "invalid escape \\x{hex}: expected two hex digits"
                                )));
                            }
                        }
                    }
                    other => {
                        // Kept as written, as HAProxy does (regex back-references).
                        word.push('\\');
                        word.push(other);
                    }
                }
            }
            (Quote::Weak, '$') => {
                return Err(Unread::Environment(format!(
                    "environment variable in {:?}: set its value in the file before importing",
                    &line[at..]
                )));
            }
            (Quote::Weak, c) => word.push(c),
            (Quote::None, '#') => {
                end = at;
                break;
            }
            (Quote::None, c) if c == ' ' || c == '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (Quote::None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote != Quote::None {
        return Err(Unread::Malformed("unmatched quote".into()));
    }
    if in_word {
        words.push(word);
    }
    Ok((words, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<&[&str], &str>) {
        let got = words(line).map(|(w, _)| w);
        match expected {
            Ok(want) => assert_eq!(
                got,
                Ok(want.iter().map(|s| s.to_string()).collect()),
                "{line}"
            ),
            Err(part) => {
                let (Unread::Malformed(message) | Unread::Environment(message)) =
                    got.expect_err(line);
                assert!(message.contains(part), "{line}: {message}");
            }
        }
    }

    #[test]
    fn words_follow_haproxy_quoting_and_escaping() {
        check("  bind *:80  ", Ok(&["bind", "*:80"]));
        check(
            "option httpchk HEAD / HTTP/1.1\\r\\nHost:\\ example.com",
            Ok(&[
                "option",
                "httpchk",
                "HEAD",
                "/",
                "HTTP/1.1\r\nHost: example.com",
            ]),
        );
        check(
            "log-format \"%t %s\"' %r'\\ x",
            Ok(&["log-format", "%t %s %r x"]),
        );
        check(
            "acl a path_beg /a # trailing comment",
            Ok(&["acl", "a", "path_beg", "/a"]),
        );
        check(
            "x \\#not-a-comment '#' \"#\"",
            Ok(&["x", "#not-a-comment", "#", "#"]),
        );
        check("x 'a\\b' \"a\\\\b\"", Ok(&["x", "a\\b", "a\\b"]));
        check("x \"\" y", Ok(&["x", "", "y"]));
        check("x \\x41\\x42", Ok(&["x", "AB"]));
        check("reqrep ^(.*) \\1", Ok(&["reqrep", "^(.*)", "\\1"]));
        check("# only a comment", Ok(&[]));
        check("x \"open", Err("unmatched quote"));
        check("x 'open", Err("unmatched quote"));
        check("x \\xZZ", Err("invalid escape"));
        check("x \"$HOME\"", Err("environment variable"));
        check("x \\", Err("backslash ends the line"));
    }

    #[test]
    fn lines_keep_numbers_and_text_without_comments() {
        let (lines, errors, skipped) =
            lines("global\n\n  # c\n  maxconn 10 # max\nx 'y\nuser \"$U\"\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(skipped.iter().map(|s| s.line).collect::<Vec<_>>(), [6]);
        assert_eq!((lines[1].number, lines[1].text.as_str()), (4, "maxconn 10"));
        assert_eq!(
            errors,
            vec![Rejection {
                line: 5,
                message: "unmatched quote".into()
            }]
        );
    }
}
