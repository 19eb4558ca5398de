//! Path normalisation: decode percent-encoded unreserved characters, remove
//! dot segments (RFC 3986 section 5.2.4), and refuse encodings that make a
//! path mean different things to different parsers.

use std::borrow::Cow;

/// Why a path is refused.
pub type PathError = &'static str;

/// The normalised form of `path`, borrowed when it is already normal (the
/// common case costs one scan and no allocation).
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return if path == "*" {
            Ok(Cow::Borrowed(path))
        } else {
            Err("path must start with '/'")
        };
    }
    if !needs_work(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

fn needs_work(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter().any(|&c| c == b'%' || c == b'\\') || b.windows(2).any(|w| w == b"/.")
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => return Err("backslash in path"),
            b'%' => {
                let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else {
                    return Err("truncated percent-encoding");
                };
                let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                    return Err("invalid percent-encoding");
                };
                let c = h * 16 + l;
                match c {
                    b'/' | b'\\' => return Err("encoded slash in path"),
                    0 => return Err("encoded NUL in path"),
                    b'%' if b.get(i + 3).copied().and_then(hex).is_some()
                        && b.get(i + 4).copied().and_then(hex).is_some() =>
                    {
                        return Err("double percent-encoding in path");
                    }
                    c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                        out.push(char::from(c));
                    }
                    _ => out.push_str(&path[i..i + 3]),
                }
                i += 3;
            }
            _ => {
                let start = i;
                while i < b.len() && b[i] != b'%' && b[i] != b'\\' {
                    i += 1;
                }
                out.push_str(&path[start..i]);
            }
        }
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 section 5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut rest = path.strip_prefix('/').unwrap_or(path);
    let mut trailing_slash;
    loop {
        let (segment, more) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        match segment {
            "." => trailing_slash = more.is_none(),
            ".." => {
                segments.pop();
                trailing_slash = more.is_none();
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
        match more {
            Some(m) => rest = m,
            None => break,
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = normalize_path(input).map(Cow::into_owned);
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "input {input}");
    }

    #[test]
    fn normal_paths_pass_unchanged() {
        check("/", Ok("/"));
        check("/api/users/7", Ok("/api/users/7"));
        check("/a;b/c", Ok("/a;b/c"));
        check("*", Ok("*"));
    }

    #[test]
    fn dot_segments_are_removed() {
        check("/a/./b", Ok("/a/b"));
        check("/a/../b", Ok("/b"));
        check("/a/b/..", Ok("/a/"));
        check("/../../etc", Ok("/etc"));
        check("/api/users/../../admin", Ok("/admin"));
        check("/a/.", Ok("/a/"));
        check("/.hidden", Ok("/.hidden"));
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        check("/%61pi/users", Ok("/api/users"));
        check("/a%2Eb", Ok("/a.b"));
        check("/%2e%2e/admin", Ok("/admin"));
        check("/a%20b", Ok("/a%20b"));
    }

    #[test]
    fn ambiguous_encodings_are_refused() {
        check("/a%2Fb", Err("encoded slash in path"));
        check("/a%5cb", Err("encoded slash in path"));
        check("/a%00", Err("encoded NUL in path"));
        check("/a%252F", Err("double percent-encoding in path"));
        check("/a%zz", Err("invalid percent-encoding"));
        check("/a%2", Err("truncated percent-encoding"));
        check("/a\\b", Err("backslash in path"));
        check("a", Err("path must start with '/'"));
    }
}
