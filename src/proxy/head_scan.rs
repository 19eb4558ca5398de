//! The request-head scanner: follows the bytes of an HTTP/1 client
//! connection as they are read, head after head, and notes each head that
//! carries both `Content-Length` and `Transfer-Encoding` (hyper drops the
//! length silently; the service refuses such a request with 400, R1).
//! Owns `HeadScan` and `HeadVerdicts`.
//!
//! Invariant: every head that ends in the bytes fed gets one verdict, in
//! order, however the bytes are cut into reads and however many heads one
//! read holds (pipelining). Bodies are skipped by their own framing (a
//! length, or chunks), so body bytes are never taken for header lines. The
//! scanner keeps at most the first bytes of each line and allocates nothing.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Scanner state, carried from one read to the next.
#[derive(Debug)]
pub struct HeadScan {
    /// The first bytes of the current line, while `is_collecting`.
    prefix: [u8; HeadScan::LONGEST],
    len: usize,
    is_collecting: bool,
    /// Lines of the current head seen so far (blank lines before a request
    /// line are not counted: RFC 9112 section 2.2 lets servers skip them).
    lines: u32,
    seen_length: bool,
    seen_encoding: bool,
    /// The `Content-Length` value of the current head, when it has one
    /// (`Err` when it cannot be read: too long, or not digits).
    length: Option<Result<u64, ()>>,
    /// Where in the byte stream the scanner is.
    at: Position,
}

/// Where the scanner is in the connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// In a head (request line, header lines or trailers).
    Head,
    /// In a body of known length: this many bytes still to skip.
    Body(u64),
    /// At a chunk-size line: the size read so far, and whether an extension
    /// (or anything else after the digits) has begun.
    ChunkSize { size: u64, is_extension: bool },
    /// In chunk data: this many bytes (data and its CRLF) to skip.
    ChunkData(u64),
    /// Skipping to the end of the line that closes a chunk.
    ChunkEnd,
    /// Reading trailer lines after the last chunk, up to a blank line.
    Trailers,
    /// No more HTTP/1 heads to follow: the HTTP/2 preface was read, or a
    /// body's length could not be read (hyper refuses such a head).
    Stopped,
}

/// What the scanner says about one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One framing header or none.
    Clean,
    /// Both `Content-Length` and `Transfer-Encoding`.
    Ambiguous,
    /// The body's length could not be read, so later heads cannot be found.
    Untracked,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            prefix: [0; HeadScan::LONGEST],
            len: 0,
            is_collecting: true,
            lines: 0,
            seen_length: false,
            seen_encoding: false,
            length: None,
            at: Position::Head,
        }
    }
}

impl HeadScan {
    /// The longest line prefix looked at: a name, its colon and enough of
    /// a `Content-Length` value (20 digits) to read it.
    const LONGEST: usize = "content-length:".len() + 40;

    /// Whether every byte fed so far belongs to whole messages: the last
    /// head's body (if any) has been read to its end and no byte of the
    /// next head has come. The client then has nothing more to send until
    /// it is answered (`ClientStream::poll_client_left`).
    pub fn is_between_messages(&self) -> bool {
        self.at == Position::Head && self.lines == 0 && self.len == 0
    }

    /// Whether the bytes fed so far end inside a message's body (its data
    /// or chunk framing): the client has more of it to send.
    pub fn is_in_body(&self) -> bool {
        !matches!(self.at, Position::Head | Position::Stopped)
    }

    /// Feeds bytes as they were read; `verdict` gets one call per head that
    /// ends in them.
    pub fn feed(&mut self, mut bytes: &[u8], mut verdict: impl FnMut(Verdict)) {
        while !bytes.is_empty() {
            bytes = match self.at {
                Position::Stopped => &[],
                Position::Head | Position::Trailers => self.head_bytes(bytes, &mut verdict),
                Position::Body(left) => {
                    let skip = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let left = left - skip as u64;
                    self.at = match left {
                        0 => Position::Head,
                        _ => Position::Body(left),
                    };
                    &bytes[skip..]
                }
                Position::ChunkSize { size, is_extension } => {
                    self.chunk_size(bytes, size, is_extension)
                }
                Position::ChunkData(left) => {
                    let skip = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let left = left - skip as u64;
                    self.at = match left {
                        0 => Position::ChunkEnd,
                        _ => Position::ChunkData(left),
                    };
                    &bytes[skip..]
                }
                Position::ChunkEnd => match memchr::memchr(b'\n', bytes) {
                    Some(i) => {
                        self.at = Position::ChunkSize {
                            size: 0,
                            is_extension: false,
                        };
                        &bytes[i + 1..]
                    }
                    None => &[],
                },
            };
        }
    }

    /// Reads a chunk-size line; at its end moves to the data, or to the
    /// trailers after the last (zero-size) chunk.
    fn chunk_size<'b>(&mut self, bytes: &'b [u8], mut size: u64, mut ext: bool) -> &'b [u8] {
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.at = match size {
                    0 => Position::Trailers,
                    // The data, then its CRLF, then `ChunkEnd` finds the LF.
                    n => Position::ChunkData(n.saturating_add(1)),
                };
                self.start_line();
                return &bytes[i + 1..];
            }
            match (ext, char::from(b).to_digit(16)) {
                (false, Some(d)) => size = size.saturating_mul(16).saturating_add(u64::from(d)),
                _ => ext = true,
            }
        }
        self.at = Position::ChunkSize {
            size,
            is_extension: ext,
        };
        &[]
    }

    fn start_line(&mut self) {
        self.is_collecting = true;
        self.len = 0;
    }

    /// Reads head (or trailer) lines until the blank line that ends them.
    fn head_bytes<'b>(
        &mut self,
        mut bytes: &'b [u8],
        verdict: &mut impl FnMut(Verdict),
    ) -> &'b [u8] {
        loop {
            if !self.is_collecting {
                let Some(i) = memchr::memchr(b'\n', bytes) else {
                    return &[];
                };
                bytes = &bytes[i + 1..];
                self.start_line();
            }
            let room = Self::LONGEST - self.len;
            let take = memchr::memchr(b'\n', bytes)
                .map_or(bytes.len(), |i| i + 1)
                .min(room);
            self.prefix[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            let is_line_end = self.prefix[..self.len].ends_with(b"\n");
            if !is_line_end && self.len < Self::LONGEST {
                return bytes;
            }
            if is_line_end && matches!(&self.prefix[..self.len], b"\r\n" | b"\n") {
                if self.at == Position::Trailers {
                    self.at = Position::Head;
                    self.start_line();
                    return bytes;
                }
                if self.lines == 0 {
                    // An empty line before a request line.
                    self.start_line();
                    continue;
                }
                self.end_head(verdict);
                return bytes;
            }
            if self.at == Position::Head {
                self.header_line(is_line_end);
                if self.at == Position::Stopped {
                    return &[];
                }
            }
            self.is_collecting = is_line_end;
            self.len = 0;
        }
    }

    /// Notes what one line of a head (its first bytes; `is_whole` when
    /// they are the whole line) says about framing.
    fn header_line(&mut self, is_whole: bool) {
        let line = &self.prefix[..self.len];
        if self.lines == 0 && line.starts_with(b"PRI * HTTP/2.0") {
            // The HTTP/2 preface: no HTTP/1 heads follow.
            self.at = Position::Stopped;
            return;
        }
        let length = header_value(line, b"content-length")
            .map(|value| parse_length(value).filter(|_| is_whole));
        let is_encoding = header_value(line, b"transfer-encoding").is_some();
        self.lines += 1;
        if let Some(length) = length {
            self.seen_length = true;
            self.length = Some(length.ok_or(()));
        }
        self.seen_encoding |= is_encoding;
    }

    /// The blank line after a head: give its verdict and skip its body.
    fn end_head(&mut self, verdict: &mut impl FnMut(Verdict)) {
        // As hyper: chunked wins over a length (such a head is refused and
        // its connection closed anyway).
        let (seen, next) = match (self.seen_encoding, self.length) {
            (true, _) => (
                Verdict::Clean,
                Position::ChunkSize {
                    size: 0,
                    is_extension: false,
                },
            ),
            (false, Some(Ok(0)) | None) => (Verdict::Clean, Position::Head),
            (false, Some(Ok(n))) => (Verdict::Clean, Position::Body(n)),
            (false, Some(Err(()))) => (Verdict::Untracked, Position::Stopped),
        };
        verdict(match self.seen_length && self.seen_encoding {
            true => Verdict::Ambiguous,
            false => seen,
        });
        *self = HeadScan::default();
        self.at = next;
    }
}

/// The value of a header line named `name` (any case), if the line is one.
fn header_value<'l>(line: &'l [u8], name: &[u8]) -> Option<&'l [u8]> {
    let rest = line.get(name.len()..)?;
    (line[..name.len()].eq_ignore_ascii_case(name) && rest.first() == Some(&b':'))
        .then(|| &rest[1..])
}

/// A `Content-Length` value: digits with optional whitespace around them.
/// Anything else is `None` (hyper refuses such a head and closes).
fn parse_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Verdicts of heads read but not yet taken by their requests, oldest
/// first: a bit per head in a 64-bit queue. Shared by the socket (which
/// pushes) and the requests (which take), on the one connection task.
#[derive(Debug, Default)]
pub struct HeadVerdicts {
    /// Bit `i` is set when the `i`-th pending head is ambiguous.
    bits: AtomicU64,
    len: AtomicU32,
    /// Heads can no longer be followed: every later request is refused.
    is_untracked: AtomicBool,
}

impl HeadVerdicts {
    /// Heads beyond this many pending ones are taken as ambiguous: a client
    /// that pipelines more in one go is refused rather than trusted.
    const CAPACITY: u32 = 64;

    pub fn push(&self, verdict: Verdict) {
        let len = self.len.load(Ordering::Relaxed);
        let is_ambiguous = match verdict {
            Verdict::Clean => false,
            Verdict::Ambiguous => true,
            Verdict::Untracked => {
                self.is_untracked.store(true, Ordering::Relaxed);
                true
            }
        };
        if is_ambiguous || len >= Self::CAPACITY {
            let bit = len.min(Self::CAPACITY - 1);
            self.bits.fetch_or(1 << bit, Ordering::Relaxed);
        }
        self.len
            .store((len + 1).min(Self::CAPACITY), Ordering::Relaxed);
    }

    /// Whether no head read waits for its request: a head read ahead
    /// (pipelined) has a verdict here until its request starts.
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Whether the oldest pending head must be refused. With none pending
    /// (the scanner lost the heads), every request is refused.
    pub fn take(&self) -> bool {
        let len = self.len.load(Ordering::Relaxed);
        if len == 0 {
            return self.is_untracked.load(Ordering::Relaxed);
        }
        let bits = self.bits.load(Ordering::Relaxed);
        // A full queue keeps its last bit: what overflowed is ambiguous.
        let overflowed = match len == Self::CAPACITY {
            true => bits & (1 << (Self::CAPACITY - 1)),
            false => 0,
        };
        self.bits.store((bits >> 1) | overflowed, Ordering::Relaxed);
        self.len.store(len - 1, Ordering::Relaxed);
        bits & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(scan: &mut HeadScan, bytes: &[u8]) -> Vec<bool> {
        let mut out = Vec::new();
        scan.feed(bytes, |v| out.push(v != Verdict::Clean));
        out
    }

    /// Feeds `stream` cut at every position (and byte by byte) and expects
    /// the same verdicts each time.
    fn check(stream: &[u8], expected: &[bool]) {
        let shown = String::from_utf8_lossy(stream);
        for cut in 0..=stream.len() {
            let mut scan = HeadScan::default();
            let mut got = verdicts(&mut scan, &stream[..cut]);
            got.extend(verdicts(&mut scan, &stream[cut..]));
            assert_eq!(got, expected, "cut at {cut}: {shown:?}");
        }
        let mut scan = HeadScan::default();
        let got: Vec<bool> = stream
            .chunks(1)
            .flat_map(|b| verdicts(&mut scan, b))
            .collect();
        assert_eq!(got, expected, "byte by byte: {shown:?}");
    }

    #[test]
    fn one_head() {
        let cases: &[(&[u8], &[bool])] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", &[true]),
            (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 6\r\n\r\n", &[true]),
            (b"POST / HTTP/1.1\nContent-Length: 6\nTransfer-Encoding: chunked\n\n", &[true]),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &[false]),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Content-Length: 6\r\n\r\n", &[false]),
            (b"POST / HTTP/1.1\r\nContent-Lengthy: 6\r\nTransfer-Encoding: chunked\r\n\r\n", &[false]),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &[false]),
            (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[false]),
            (b"GET / HTTP/1.1\r\nHost: a", &[]),
        ];
        for (stream, expected) in cases {
            check(stream, expected);
        }
    }

    #[test]
    fn pipelined_heads_each_get_a_verdict() {
        let cases: &[(&[u8], &[bool])] = &[
            // A clean head, then a smuggling one in the same read.
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
                &[false, true],
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
                &[true, false],
            ),
            // A body that looks like a head is skipped by its length.
            (
                b"POST / HTTP/1.1\r\nContent-Length: 54\r\n\r\nX\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                &[false, true],
            ),
            // ...and chunks by their sizes, extensions and trailers too.
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2d;ext=1\r\nX\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n\r\n0\r\nTrailer: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
                &[false, false, true],
            ),
        ];
        for (stream, expected) in cases {
            check(stream, expected);
        }
    }

    /// Fed a stream byte by byte, the scanner is between messages exactly
    /// after each whole message: a head without a body, or a body read to
    /// its last byte (by length, or chunks with trailers).
    #[test]
    fn the_scanner_knows_when_the_messages_read_are_whole() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".as_slice();
        let sized = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".as_slice();
        let chunked =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
                .as_slice();
        let stream = [get, sized, chunked, get].concat();
        let mut ends = Vec::new();
        let mut at = 0;
        for message in [get, sized, chunked, get] {
            at += message.len();
            ends.push(at);
        }
        let mut scan = HeadScan::default();
        assert!(scan.is_between_messages(), "nothing read yet");
        let mut whole = Vec::new();
        for (i, byte) in stream.iter().enumerate() {
            scan.feed(std::slice::from_ref(byte), |_| {});
            if scan.is_between_messages() {
                whole.push(i + 1);
            }
        }
        assert_eq!(whole, ends);
    }

    #[test]
    fn the_scanner_knows_when_a_body_is_still_to_come() {
        let mut scan = HeadScan::default();
        let mut steps: Vec<(&[u8], bool)> = vec![
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", true),
            (b"ab", true),
            (b"c", false),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
            ),
            (b"3\r\nabc\r\n", true),
            (b"0\r\n", true),
            (b"\r\n", false),
        ];
        // A head and its whole body in one read.
        steps.push((b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", false));
        for (bytes, in_body) in steps {
            scan.feed(bytes, |_| {});
            let shown = String::from_utf8_lossy(bytes);
            assert_eq!(scan.is_in_body(), in_body, "after {shown:?}");
        }
    }

    #[test]
    fn verdicts_are_taken_in_order() {
        let queue = HeadVerdicts::default();
        assert!(!queue.take(), "nothing pending");
        for v in [Verdict::Clean, Verdict::Ambiguous, Verdict::Clean] {
            queue.push(v);
        }
        let taken: Vec<bool> = (0..4).map(|_| queue.take()).collect();
        assert_eq!(taken, [false, true, false, false]);
    }

    #[test]
    fn the_queue_is_empty_once_every_head_is_taken() {
        let queue = HeadVerdicts::default();
        assert!(queue.is_empty());
        queue.push(Verdict::Clean);
        queue.push(Verdict::Clean);
        queue.take();
        assert!(!queue.is_empty(), "a head read ahead still waits");
        queue.take();
        assert!(queue.is_empty());
    }

    #[test]
    fn heads_past_the_queue_are_ambiguous() {
        let queue = HeadVerdicts::default();
        for _ in 0..HeadVerdicts::CAPACITY + 5 {
            queue.push(Verdict::Clean);
        }
        let taken: Vec<bool> = (0..HeadVerdicts::CAPACITY).map(|_| queue.take()).collect();
        assert!(!taken[0]);
        assert!(taken[HeadVerdicts::CAPACITY as usize - 1]);
    }

    #[test]
    fn a_length_that_cannot_be_read_refuses_every_later_request() {
        let mut scan = HeadScan::default();
        let queue = HeadVerdicts::default();
        let zeros = "0".repeat(60);
        let stream = format!(
            "POST / HTTP/1.1\r\nContent-Length: {zeros}5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n"
        );
        scan.feed(stream.as_bytes(), |v| queue.push(v));
        assert!(queue.take(), "the head whose body cannot be followed");
        assert!(queue.take(), "and whatever follows it");
    }

    #[test]
    fn the_http2_preface_stops_the_scan() {
        let mut scan = HeadScan::default();
        let got = verdicts(
            &mut scan,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\nContent-Length: 1\nTransfer-Encoding: chunked\n\n",
        );
        assert!(got.is_empty(), "{got:?}");
    }
}
