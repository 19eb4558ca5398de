//! The `.h2` case format of the bad-input corpus: one HTTP/2 request as
//! text, turned into the frames of stream 1.
//!
//! ```text
//! # a comment
//! :method: POST
//! :scheme: http
//! :authority: a
//! :path: /
//! content-length: 10
//!
//! hello
//! ```
//!
//! Each line up to the first blank one is a header field, in order: the
//! name up to the first `": "` and the value after it (a line `name:`
//! with no `": "` in it has an empty value). Each line after the blank one
//! is one DATA frame. The last frame sent carries END_STREAM (HEADERS when
//! there is no DATA). In names, values and data, `\r`, `\n`, `\t`, `\0`,
//! `\\` and `\xHH` stand for those bytes; nothing else is changed, so a
//! name may hold uppercase letters or a colon. Fields are sent as HPACK
//! literals with literal names, never indexed or Huffman-coded.

use super::h2_frames::{DATA, END_HEADERS, END_STREAM, HEADERS, frame, literal};

/// A parsed case: header fields and DATA frames, as bytes.
pub struct H2Case {
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub data: Vec<Vec<u8>>,
}

impl H2Case {
    pub fn parse(text: &str) -> Result<H2Case, String> {
        let mut fields = Vec::new();
        let mut data = Vec::new();
        let mut in_body = false;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if in_body {
                data.push(unescape(line)?);
            } else if line.is_empty() {
                in_body = true;
            } else {
                let (name, value) = match line.find(": ") {
                    Some(i) => (&line[..i], &line[i + 2..]),
                    None => match line.strip_suffix(':') {
                        Some(name) => (name, ""),
                        None => return Err(format!("not `name: value`: {line:?}")),
                    },
                };
                fields.push((unescape(name)?, unescape(value)?));
            }
        }
        Ok(H2Case { fields, data })
    }

    /// The HEADERS and DATA frames of stream `stream`, in one buffer.
    pub fn frames(&self, stream: u32) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in &self.fields {
            literal(name, value, &mut block);
        }
        let ends = match self.data.is_empty() {
            true => END_STREAM,
            false => 0,
        };
        let mut out = frame(HEADERS, END_HEADERS | ends, stream, &block);
        for (i, chunk) in self.data.iter().enumerate() {
            let last = i + 1 == self.data.len();
            out.extend(frame(
                DATA,
                if last { END_STREAM } else { 0 },
                stream,
                chunk,
            ));
        }
        out
    }
}

fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next() {
            Some(b'r') => b'\r',
            Some(b'n') => b'\n',
            Some(b't') => b'\t',
            Some(b'0') => 0,
            Some(b'\\') => b'\\',
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad \\x escape in {text:?}"))?
            }
            other => return Err(format!("unknown escape {other:?} in {text:?}")),
        });
    }
    Ok(out)
}
