//! The HTTP/1.1 client that speaks to servers, driven by the request's own
//! task: no task per connection, no channel between the request and its
//! connection. An `Exchange` writes the head, streams the request body while it
//! waits for the response head, and returns the response with a body
//! (`UpstreamBody`) that reads the rest from the socket and gives the
//! connection back only when the response ended cleanly and the whole
//! request was sent.
//!
//! Framing follows RFC 9112: the request is framed again from its body
//! (R2); the response's length comes from its status, the request method,
//! `Transfer-Encoding` and `Content-Length`, decoded strictly (R4). Anything
//! the decoder cannot follow is an error, and the connection is dropped,
//! never pooled.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;

use crate::upstream::{BodyError, RequestBody, UpgradedConn, UpstreamConn};

/// Most header fields in a response head (hyper's client default).
const MAX_HEADERS: usize = 100;
/// Largest response head, and largest trailer section.
const MAX_HEAD: usize = 64 * 1024;
/// Most bytes read from a server at once.
const MAX_READ: usize = crate::upstream::LARGE_BUFFER;
/// A read buffer starts at this size.
const FIRST_READ: usize = 8 * 1024;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why an exchange with a server failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before its response ended.
    #[error("connection closed before the response ended")]
    Closed,
    /// The response broke HTTP/1.1's grammar or framing (R4).
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    /// The client's request body failed (R3: the upstream request is
    /// aborted, never ended cleanly).
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl H1Error {
    /// An invalid response, not a network failure.
    pub fn invalid_reason(&self) -> Option<&'static str> {
        match self {
            H1Error::Invalid(reason) => Some(reason),
            _ => None,
        }
    }
}

/// A request that got no response head.
#[derive(Debug)]
pub struct SendError {
    pub error: H1Error,
    /// The request, given back when no byte of a response came and no byte
    /// of its body was taken from the client: it may be sent again.
    pub request: Option<Request<RequestBody>>,
    /// Not one byte of the request was written.
    pub nothing_sent: bool,
}

/// When a request is written to its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At once: a new connection, whose connect already waited for the
    /// scheduler's next turn.
    Now,
    /// After the tasks that the scheduler already has ready: a pooled
    /// connection. The requests of connections that became readable
    /// together then reach their servers together, and a server that went
    /// to sleep is woken once for all of them instead of once each. Each
    /// wake-up of a process asleep on another core costs the sender kernel
    /// time: under keep-alive load, batching takes 0.3-1.2 µs off each
    /// request's (BENCHMARKS.md).
    AfterReadyTasks,
}

/// Sends `request` on `conn` and waits for the response head: an
/// `Exchange` polled in a future of its own, for the tests.
#[cfg(test)]
pub async fn send(
    conn: UpstreamConn,
    request: Request<RequestBody>,
    upgrade: bool,
    start: Start,
) -> Result<Response<UpstreamBody>, SendError> {
    let mut exchange = Exchange::start(conn, request, upgrade, start);
    let head = std::future::poll_fn(|cx| exchange.poll_head(cx)).await;
    exchange.finish(head)
}

/// One request on a connection, up to its response head: `start` it,
/// `poll_head` it until the head or an error comes, and `finish` it. With
/// `upgrade`, a `101` answer is accepted and its body is empty; the
/// connection is then taken with `UpstreamBody::into_upgraded`.
///
/// A plain value, kept in the caller's state and polled there
/// (`attempt::send_with_retries`): a future around it would be made on the
/// stack and then moved into that state, and again into a timeout around
/// it, writing its 1,040 bytes twice more into memory the cache does not
/// hold when many requests are in flight (BENCHMARKS.md).
pub struct Exchange {
    conn: UpstreamConn,
    /// The request's head, kept to send it again; its header map, written
    /// out by then, takes the response's fields (`parse_head`).
    parts: http::request::Parts,
    /// `parts.headers` went to the response: the request cannot be sent
    /// again.
    is_map_taken: bool,
    /// The request, written as far as the socket took it.
    writer: Writer,
    /// The write failed: kept while the server's answer may still be read
    /// (a server may answer early and close).
    write_error: Option<H1Error>,
    /// A byte of a response came (a `1xx` one included).
    is_answered: bool,
    is_head: bool,
    upgrade: bool,
    /// The first poll is still to yield (`Start::AfterReadyTasks`).
    is_deferred: bool,
}

impl Exchange {
    /// The request, ready to be written on `conn` when first polled.
    pub fn start(
        conn: UpstreamConn,
        request: Request<RequestBody>,
        upgrade: bool,
        start: Start,
    ) -> Self {
        let (parts, body) = request.into_parts();
        Exchange::new(conn, parts, body, upgrade, start)
    }

    fn new(
        conn: UpstreamConn,
        parts: http::request::Parts,
        body: RequestBody,
        upgrade: bool,
        start: Start,
    ) -> Self {
        Exchange {
            writer: Writer::new(&parts, body),
            conn,
            is_map_taken: false,
            write_error: None,
            is_answered: false,
            is_head: parts.method == Method::HEAD,
            parts,
            upgrade,
            is_deferred: start == Start::AfterReadyTasks,
        }
    }

    /// The request, when it may go again: no response byte came, no body
    /// byte was taken from the client, and its map is still its own.
    fn into_replayable(self) -> Option<Request<RequestBody>> {
        if self.is_answered || self.writer.body_polled || self.is_map_taken {
            return None;
        }
        Some(Request::from_parts(self.parts, self.writer.body))
    }

    /// The response with its body, or the error with the request when it
    /// may go again.
    // The error carries the request back (352 bytes, the response 240):
    // both are moved on at once, and a box would cost an allocation.
    #[allow(clippy::result_large_err)]
    pub fn finish(self, head: Result<Head, H1Error>) -> Result<Response<UpstreamBody>, SendError> {
        match head {
            Ok(head) => Ok(self.into_response(head)),
            Err(error) => {
                let nothing_sent = self.writer.written == 0;
                Err(SendError {
                    error,
                    request: self.into_replayable(),
                    nothing_sent,
                })
            }
        }
    }

    /// Writes what it can of the request and reads the response head.
    pub fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Head, H1Error>> {
        if self.is_deferred {
            // Woken at once: the task goes to the back of the scheduler's
            // queue, behind the tasks already ready.
            self.is_deferred = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.poll_write(cx);
        // The client's body failed: the exchange is aborted now (R3).
        if matches!(self.write_error, Some(H1Error::Body(_))) {
            if let Some(e) = self.write_error.take() {
                return Poll::Ready(Err(e));
            }
        }
        loop {
            if !self.conn.buf.is_empty() {
                let parsed = parse_head(&mut self.conn.buf, &mut self.parts.headers, self.upgrade);
                if !matches!(parsed, Ok(Parsed::Partial | Parsed::Interim)) {
                    self.is_map_taken = true;
                }
                match parsed? {
                    Parsed::Head(head) => return Poll::Ready(Ok(head)),
                    // 100 Continue, 103 Early Hints: not relayed.
                    Parsed::Interim => continue,
                    Parsed::Partial if self.conn.buf.len() >= MAX_HEAD => {
                        return Poll::Ready(Err(H1Error::Invalid("response head too large")));
                    }
                    Parsed::Partial => {}
                }
            }
            match ready!(poll_read(&mut self.conn, cx, FIRST_READ)) {
                Ok(0) => {
                    return Poll::Ready(Err(self.write_error.take().unwrap_or(H1Error::Closed)));
                }
                Ok(_) => self.is_answered = true,
                Err(e) => return Poll::Ready(Err(self.write_error.take().unwrap_or(e.into()))),
            }
        }
    }

    /// Moves the request forward; a write error is kept for later, since
    /// the server's answer may still be there to read.
    fn poll_write(&mut self, cx: &mut Context<'_>) {
        if self.write_error.is_some() {
            return;
        }
        if !self.writer.is_done() {
            match self.writer.poll(&mut self.conn.io, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => self.write_error = Some(e),
                Poll::Pending => {}
            }
        }
    }

    fn into_response(self, head: Head) -> Response<UpstreamBody> {
        let Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        } = head;
        let decoder = if status == StatusCode::SWITCHING_PROTOCOLS {
            Decoder::Upgrade
        } else if self.is_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Decoder::Length(0)
        } else {
            framing
        };
        let body = UpstreamBody {
            // A body delimited by the close, or a request whose write
            // failed, leaves nothing to reuse.
            reusable: keep_alive
                && self.write_error.is_none()
                && !matches!(decoder, Decoder::Close | Decoder::Upgrade),
            conn: Some(self.conn),
            writer: (!self.writer.is_done()).then(|| Box::new(self.writer)),
            decoder,
            failed: None,
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        response
    }
}

/// A request on its way out: the head, then the body framed again.
struct Writer {
    out: Out,
    body: RequestBody,
    framing: Outgoing,
    /// The last frame was taken from the body.
    is_body_done: bool,
    /// A frame was taken from the client's body: the request cannot be
    /// sent again.
    body_polled: bool,
    /// Everything was written and flushed.
    is_flushed: bool,
    written: u64,
}

#[derive(Clone, Copy)]
enum Outgoing {
    /// No body.
    Empty,
    /// `Content-Length`: the bytes still due.
    Length(u64),
    Chunked,
}

impl Writer {
    fn new(parts: &http::request::Parts, body: RequestBody) -> Self {
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &parts.headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        let framing = if body.is_end_stream() {
            // RFC 9110 8.6: a request whose method gives a body a meaning
            // says it has none.
            if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
                head.extend_from_slice(b"content-length: 0\r\n");
            }
            Outgoing::Empty
        } else if let Some(len) = body.size_hint().exact() {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa(len, &mut [0; 20]));
            head.extend_from_slice(b"\r\n");
            Outgoing::Length(len)
        } else if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) {
            // A body of unknown length on a method that almost never has
            // one is not sent (as hyper's client does): the server sees a
            // complete request at once.
            Outgoing::Empty
        } else {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Outgoing::Chunked
        };
        head.extend_from_slice(b"\r\n");
        Writer {
            out: Out {
                buf: head,
                at: 0,
                data: Bytes::new(),
                tail: b"",
            },
            is_body_done: matches!(framing, Outgoing::Empty),
            body,
            framing,
            body_polled: false,
            is_flushed: false,
            written: 0,
        }
    }

    /// The whole request went out, flushed.
    fn is_done(&self) -> bool {
        self.is_flushed
    }

    /// Ready once the whole request is written.
    fn poll(
        &mut self,
        io: &mut (impl AsyncWrite + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), H1Error>> {
        loop {
            if !self.is_body_done && self.out.data.is_empty() {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(frame) => {
                        self.body_polled = true;
                        self.stage(frame)?;
                        continue;
                    }
                    Poll::Pending if self.out.is_empty() => {
                        // What a TLS stream holds goes out while the
                        // client's body is awaited.
                        if let Poll::Ready(Err(e)) = Pin::new(&mut *io).poll_flush(cx) {
                            return Poll::Ready(Err(e.into()));
                        }
                        return Poll::Pending;
                    }
                    Poll::Pending => {}
                }
            }
            if self.out.is_empty() {
                if self.is_body_done {
                    ready!(Pin::new(&mut *io).poll_flush(cx))?;
                    self.is_flushed = true;
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let n = ready!(self.out.poll_write(io, cx))?;
            self.written += n as u64;
        }
    }

    /// Queues one frame of the body, framed.
    fn stage(&mut self, frame: Option<Result<Frame<Bytes>, BodyError>>) -> Result<(), H1Error> {
        let data = match frame {
            None => {
                self.is_body_done = true;
                return match self.framing {
                    Outgoing::Chunked => {
                        self.out.push(b"0\r\n\r\n");
                        Ok(())
                    }
                    Outgoing::Length(0) | Outgoing::Empty => Ok(()),
                    // The client's framing already guards this; never end
                    // a request short (R3).
                    Outgoing::Length(_) => Err(H1Error::Body(BodyError::Short)),
                };
            }
            Some(Err(e)) => return Err(H1Error::Body(e)),
            // Trailers of a client's body are not sent on.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => return Ok(()),
            },
        };
        let len = data.len() as u64;
        match &mut self.framing {
            Outgoing::Length(due) => {
                *due = due.checked_sub(len).ok_or(BodyError::Short)?;
                self.out.push_data(data, b"");
            }
            Outgoing::Chunked => {
                self.out.push_hex(len);
                self.out.push_data(data, b"\r\n");
            }
            Outgoing::Empty => return Err(H1Error::Body(BodyError::Short)),
        }
        Ok(())
    }
}

/// Bytes waiting to be written, in order: `buf[at..]`, `data`, `tail`.
struct Out {
    buf: Vec<u8>,
    at: usize,
    data: Bytes,
    tail: &'static [u8],
}

impl Out {
    fn is_empty(&self) -> bool {
        self.at == self.buf.len() && self.data.is_empty() && self.tail.is_empty()
    }

    /// Appends bytes after everything queued; only while `data` is empty.
    fn push(&mut self, bytes: &[u8]) {
        debug_assert!(self.data.is_empty());
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
        self.buf.extend_from_slice(self.tail);
        self.tail = b"";
        self.buf.extend_from_slice(bytes);
    }

    fn push_hex(&mut self, len: u64) {
        let mut digits = [0u8; 18];
        let mut i = digits.len() - 2;
        digits[i..].copy_from_slice(b"\r\n");
        let mut n = len;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn push_data(&mut self, data: Bytes, tail: &'static [u8]) {
        self.push(b"");
        self.data = data;
        self.tail = tail;
    }

    fn poll_write(
        &mut self,
        io: &mut (impl AsyncWrite + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let slices = [
            IoSlice::new(&self.buf[self.at..]),
            IoSlice::new(&self.data),
            IoSlice::new(self.tail),
        ];
        let n = ready!(Pin::new(io).poll_write_vectored(cx, &slices))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let mut left = n;
        let from_buf = left.min(self.buf.len() - self.at);
        self.at += from_buf;
        left -= from_buf;
        let from_data = left.min(self.data.len());
        self.data.advance(from_data);
        left -= from_data;
        self.tail = &self.tail[left.min(self.tail.len())..];
        Poll::Ready(Ok(n))
    }
}

/// A response head.
pub struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// How the body is delimited, by its headers alone.
    framing: Decoder,
    /// The connection may carry another request after this response.
    keep_alive: bool,
}

enum Parsed {
    Head(Head),
    /// A `1xx` head, consumed.
    Interim,
    Partial,
}

/// Parses a response head at the start of `buf`, taking it out of `buf`
/// when complete. A whole head's fields go into `map`, taken and cleared:
/// the request's, written out by then and still in the cache, so that no
/// response allocates a map of its own (hyper then keeps it for the client
/// connection's next request head).
fn parse_head(buf: &mut BytesMut, map: &mut HeaderMap, upgrade: bool) -> Result<Parsed, H1Error> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::Invalid("too many response header fields"));
        }
        Err(_) => return Err(H1Error::Invalid("unparseable response head")),
    };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("invalid status"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(len);
        return Ok(Parsed::Interim);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(H1Error::Invalid(
            "101 to a request that asked for no upgrade",
        ));
    }
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Where each field's name and value lie in the head.
    let base = buf.as_ptr() as usize;
    let count = response.headers.len();
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        *span = (
            name as u32,
            (name + field.name.len()) as u32,
            value as u32,
            (value + field.value.len()) as u32,
        );
    }
    let head = buf.split_to(len).freeze();
    let mut headers = std::mem::take(map);
    headers.clear();
    headers.reserve(count);
    let mut keep_alive = version == Version::HTTP_11;
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for &(ns, ne, vs, ve) in &spans[..count] {
        let name = header_name(&head[ns as usize..ne as usize])?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
            .map_err(|_| H1Error::Invalid("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            let n = parse_length(value.as_bytes())?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Invalid("conflicting content-length"));
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // The last coding decides; anything but one `chunked` is
            // refused after the head (`check_response_framing`).
            chunked = Some(last_token(value.as_bytes()).eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            // Hop-by-hop, never relayed: one that names nothing but the
            // connection's persistence is not even stored (the usual
            // `keep-alive`); one naming other fields is kept for
            // `rewrite_response` to strip them.
            let mut names_fields = false;
            for token in value
                .as_bytes()
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
            {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    names_fields = true;
                }
            }
            if !names_fields {
                continue;
            }
        } else if name.as_str() == "keep-alive" {
            continue;
        }
        headers.append(name, value);
    }
    let framing = match (chunked, length) {
        (Some(true), _) => Decoder::Chunked(Chunked::Size { size: 0, digits: 0 }),
        (Some(false), _) => Decoder::Close,
        (None, Some(n)) => Decoder::Length(n),
        (None, None) => Decoder::Close,
    };
    Ok(Parsed::Head(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// A `Content-Length` value: digits only, as RFC 9110 8.6 says.
fn parse_length(value: &[u8]) -> Result<u64, H1Error> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(H1Error::Invalid("invalid content-length"));
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii()
}

/// A response field's name. The names servers send on nearly every
/// response, in the two casings they send them in, are matched as they
/// are; any other goes through `HeaderName::from_bytes` (lowercased,
/// validated, looked up).
fn header_name(raw: &[u8]) -> Result<HeaderName, H1Error> {
    let known = match raw {
        b"Content-Length" | b"content-length" => header::CONTENT_LENGTH,
        b"Content-Type" | b"content-type" => header::CONTENT_TYPE,
        b"Date" | b"date" => header::DATE,
        b"Server" | b"server" => header::SERVER,
        b"Connection" | b"connection" => header::CONNECTION,
        b"Transfer-Encoding" | b"transfer-encoding" => header::TRANSFER_ENCODING,
        b"Cache-Control" | b"cache-control" => header::CACHE_CONTROL,
        b"Content-Encoding" | b"content-encoding" => header::CONTENT_ENCODING,
        b"ETag" | b"etag" => header::ETAG,
        b"Last-Modified" | b"last-modified" => header::LAST_MODIFIED,
        b"Vary" | b"vary" => header::VARY,
        b"Set-Cookie" | b"set-cookie" => header::SET_COOKIE,
        b"Location" | b"location" => header::LOCATION,
        _ => {
            return HeaderName::from_bytes(raw)
                .map_err(|_| H1Error::Invalid("invalid header name"));
        }
    };
    Ok(known)
}

/// Reads more bytes from the server into `conn.buf`: at least `want` of
/// room, at most `MAX_READ`.
fn poll_read(
    conn: &mut UpstreamConn,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    conn.make_room(want.clamp(1, MAX_READ), FIRST_READ);
    tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
}

/// How the rest of a response body is read.
#[derive(Debug)]
enum Decoder {
    /// This many bytes are still due.
    Length(u64),
    Chunked(Chunked),
    /// Until the server closes (no length): the connection is not reused.
    Close,
    /// The server switched protocols; the body is empty.
    Upgrade,
    /// The body ended.
    Done,
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy)]
enum Chunked {
    /// In the chunk-size digits.
    Size { size: u64, digits: u8 },
    /// In a chunk extension, up to the CR.
    Extension { size: u64, seen: usize },
    /// After the size line's CR, the LF.
    SizeLf { size: u64 },
    /// In a chunk's data: this many bytes left.
    Data(u64),
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF): bytes of
    /// trailers seen so far.
    TrailerStart(usize),
    /// Inside a trailer line.
    TrailerLine(usize),
    /// After a trailer line's CR.
    TrailerLf(usize),
    /// After the final CR.
    EndLf,
}

/// What the chunked decoder made of the buffered bytes.
enum Step {
    /// A piece of a chunk's data.
    Data(Bytes),
    /// The body ended.
    End,
    /// More bytes are needed.
    More,
}

impl Chunked {
    /// Consumes bytes from `buf` until data, the end, or an empty buffer.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        let bad = |reason| Err(H1Error::Invalid(reason));
        loop {
            if let Chunked::Data(left) = *self {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = left.min(buf.len() as u64) as usize;
                let data = buf.split_to(n).freeze();
                *self = match left - n as u64 {
                    0 => Chunked::DataCr,
                    rest => Chunked::Data(rest),
                };
                return Ok(Step::Data(data));
            }
            let Some(&byte) = buf.first() else {
                return Ok(Step::More);
            };
            buf.advance(1);
            *self = match (*self, byte) {
                (Chunked::Size { size, digits }, b) if b.is_ascii_hexdigit() => {
                    if digits >= 16 {
                        return bad("chunk size too large");
                    }
                    let value = u64::from(match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        _ => b - b'A' + 10,
                    });
                    Chunked::Size {
                        size: size << 4 | value,
                        digits: digits + 1,
                    }
                }
                (Chunked::Size { digits: 0, .. }, _) => return bad("invalid chunk size"),
                (Chunked::Size { size, .. }, b'\r') => Chunked::SizeLf { size },
                (Chunked::Size { size, .. }, b';' | b' ' | b'\t') => {
                    Chunked::Extension { size, seen: 1 }
                }
                (Chunked::Size { .. }, _) => return bad("invalid chunk size"),
                (Chunked::Extension { size, .. }, b'\r') => Chunked::SizeLf { size },
                (Chunked::Extension { size, seen }, b) => {
                    if seen >= MAX_CHUNK_LINE || (b.is_ascii_control() && b != b'\t') {
                        return bad("invalid chunk extension");
                    }
                    Chunked::Extension {
                        size,
                        seen: seen + 1,
                    }
                }
                (Chunked::SizeLf { size: 0 }, b'\n') => Chunked::TrailerStart(0),
                (Chunked::SizeLf { size }, b'\n') => Chunked::Data(size),
                (Chunked::SizeLf { .. }, _) => return bad("chunk size line without CRLF"),
                (Chunked::DataCr, b'\r') => Chunked::DataLf,
                (Chunked::DataLf, b'\n') => Chunked::Size { size: 0, digits: 0 },
                (Chunked::DataCr | Chunked::DataLf, _) => return bad("chunk data without CRLF"),
                (Chunked::TrailerStart(_), b'\r') => Chunked::EndLf,
                (Chunked::EndLf, b'\n') => return Ok(Step::End),
                (Chunked::EndLf, _) => return bad("chunked body without final CRLF"),
                (Chunked::TrailerStart(seen) | Chunked::TrailerLine(seen), b) => {
                    if seen >= MAX_HEAD {
                        return bad("trailers too large");
                    }
                    match b {
                        b'\r' => Chunked::TrailerLf(seen + 1),
                        b'\n' => return bad("trailer line without CRLF"),
                        b if b.is_ascii_control() && b != b'\t' => {
                            return bad("invalid trailer");
                        }
                        _ => Chunked::TrailerLine(seen + 1),
                    }
                }
                (Chunked::TrailerLf(seen), b'\n') => Chunked::TrailerStart(seen + 1),
                (Chunked::TrailerLf(_), _) => return bad("trailer line without CRLF"),
                // Data is taken above, never byte by byte.
                (Chunked::Data(_), _) => return bad("chunk data"),
            };
        }
    }
}

/// A server's response body, read from its connection by whoever polls it.
/// It also finishes sending the request when the server answered before
/// the request body ended.
#[derive(Debug)]
pub struct UpstreamBody {
    conn: Option<UpstreamConn>,
    /// Boxed: only a request whose body outlives the response head has one.
    writer: Option<Box<Writer>>,
    decoder: Decoder,
    /// The connection may carry another request once this body ends.
    reusable: bool,
    /// An error answered on the next poll, so that the bytes before it
    /// reach the client first (hyper flushes what it holds when the body
    /// is not ready).
    failed: Option<H1Error>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// The connection, when the body and the request both ended cleanly and
    /// the server keeps it open.
    pub fn take_reusable(&mut self) -> Option<UpstreamConn> {
        let done = matches!(self.decoder, Decoder::Done | Decoder::Length(0));
        if done && self.reusable && self.writer.is_none() {
            self.conn.take()
        } else {
            None
        }
    }

    /// The connection of a `101` answer, with the bytes the server already
    /// sent over the new protocol.
    pub fn into_upgraded(mut self) -> Option<UpgradedConn> {
        match self.decoder {
            Decoder::Upgrade if self.writer.is_none() => self.conn.take().map(UpgradedConn::new),
            _ => None,
        }
    }

    fn end(&mut self) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.decoder = Decoder::Done;
        Poll::Ready(None)
    }

    fn fail(
        &mut self,
        error: H1Error,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.decoder = Decoder::Done;
        self.conn = None;
        self.failed = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(writer) = this.writer.as_mut() {
            match writer.poll(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => this.writer = None,
                // The request cannot be finished: the connection is
                // dropped when the body ends or fails.
                Poll::Ready(Err(H1Error::Body(e))) => return this.fail(H1Error::Body(e), cx),
                Poll::Ready(Err(_)) => {
                    this.reusable = false;
                    this.writer = None;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let want = match &mut this.decoder {
                Decoder::Done | Decoder::Upgrade | Decoder::Length(0) => return this.end(),
                Decoder::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = (*left).min(conn.buf.len() as u64);
                        *left -= n;
                        let data = conn.buf.split_to(n as usize).freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    usize::try_from(*left).unwrap_or(MAX_READ)
                }
                Decoder::Chunked(state) => match state.step(&mut conn.buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::End) => return this.end(),
                    Ok(Step::More) => match state {
                        Chunked::Data(left) => usize::try_from(*left).unwrap_or(MAX_READ),
                        _ => FIRST_READ,
                    },
                    Err(e) => return this.fail(e, cx),
                },
                Decoder::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    MAX_READ
                }
            };
            match ready!(poll_read(conn, cx, want)) {
                Ok(0) if matches!(this.decoder, Decoder::Close) => return this.end(),
                Ok(0) => return this.fail(H1Error::Closed, cx),
                Ok(_) => {}
                Err(e) => return this.fail(e.into(), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none()
            && matches!(
                self.decoder,
                Decoder::Done | Decoder::Upgrade | Decoder::Length(0)
            )
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done | Decoder::Upgrade => SizeHint::with_exact(0),
            Decoder::Chunked(_) | Decoder::Close => SizeHint::default(),
        }
    }
}

/// `n` in decimal, in `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::connected;

    #[test]
    fn common_names_match_what_from_bytes_gives() {
        let names: &[&[u8]] = &[
            b"Content-Length",
            b"content-length",
            b"Content-Type",
            b"content-type",
            b"Date",
            b"date",
            b"Server",
            b"server",
            b"Connection",
            b"connection",
            b"Transfer-Encoding",
            b"transfer-encoding",
            b"Cache-Control",
            b"cache-control",
            b"Content-Encoding",
            b"content-encoding",
            b"ETag",
            b"etag",
            b"Last-Modified",
            b"last-modified",
            b"Vary",
            b"vary",
            b"Set-Cookie",
            b"set-cookie",
            b"Location",
            b"location",
            b"CONTENT-length",
            b"X-Custom",
            b"x-custom",
        ];
        for &raw in names {
            let expected = HeaderName::from_bytes(raw).expect("valid name");
            assert_eq!(header_name(raw).expect("valid name"), expected, "{raw:?}");
        }
        assert!(header_name(b"bad name").is_err());
        assert!(header_name(b"").is_err());
    }

    /// Feeds `input` to a chunked decoder `step` bytes at a time; the data
    /// it gives, or its error.
    fn decode(input: &[u8], step: usize) -> Result<Vec<u8>, &'static str> {
        let mut state = Chunked::Size { size: 0, digits: 0 };
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match state.step(&mut buf) {
                    Ok(Step::Data(data)) => out.extend_from_slice(&data),
                    Ok(Step::End) => return Ok(out),
                    Ok(Step::More) => break,
                    Err(e) => return Err(e.invalid_reason().unwrap_or("other")),
                }
            }
        }
        Err("incomplete")
    }

    #[test]
    fn chunked_bodies_decode_the_same_however_they_are_split() {
        let body = b"5;a=b\r\nhello\r\nA\r\n, world!!!\r\n0\r\nx-t: 1\r\ny: 2\r\n\r\n";
        for step in [1, 2, 3, 7, body.len()] {
            assert_eq!(decode(body, step).as_deref(), Ok(&b"hello, world!!!"[..]));
        }
        assert_eq!(decode(b"0\r\n\r\n", 1).as_deref(), Ok(&b""[..]));
        assert_eq!(decode(b"ffffffffffffffff\r\n", 4), Err("incomplete"));
    }

    #[test]
    fn chunked_framing_errors_are_named() {
        let cases: [(&[u8], &str); 8] = [
            (b"fffffffffffffffff\r\n", "chunk size too large"),
            (b"\r\n", "invalid chunk size"),
            (b"x\r\n", "invalid chunk size"),
            (b"1\n", "invalid chunk size"),
            (b"1;\x01\r\n", "invalid chunk extension"),
            (b"1\rx", "chunk size line without CRLF"),
            (b"1\r\nab", "chunk data without CRLF"),
            (b"0\r\nx-t: 1\n", "trailer line without CRLF"),
        ];
        for (input, reason) in cases {
            assert_eq!(decode(input, 1), Err(reason), "{input:?}");
        }
    }

    fn head(bytes: &[u8]) -> Result<Head, &'static str> {
        let mut buf = BytesMut::from(bytes);
        match parse_head(&mut buf, &mut HeaderMap::new(), false) {
            Ok(Parsed::Head(head)) => Ok(head),
            Ok(Parsed::Interim) => Err("interim"),
            Ok(Parsed::Partial) => Err("partial"),
            Err(e) => Err(e.invalid_reason().unwrap_or("other")),
        }
    }

    #[test]
    fn the_head_decides_framing_and_keep_alive() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n").expect("head");
        assert!(matches!(h.framing, Decoder::Length(12)) && h.keep_alive);
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n");
        assert!(matches!(h.expect("head").framing, Decoder::Length(3)));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").expect("head");
        assert!(matches!(h.framing, Decoder::Chunked(_)));
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n").expect("head");
        assert!(matches!(h.framing, Decoder::Close) && !h.keep_alive);
        assert!(h.headers.is_empty(), "persistence alone is not stored");
        let h = head(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.expect("head").keep_alive);
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: x-private\r\nx-private: 1\r\n\r\n");
        assert_eq!(
            h.expect("head").headers.len(),
            2,
            "kept for rewrite_response"
        );
        let h = head(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n").expect("head");
        assert!(!h.keep_alive && h.version == Version::HTTP_10);
        assert_eq!(
            head(b"HTTP/1.1 100 Continue\r\n\r\n").err(),
            Some("interim")
        );
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\ncontent-le").err(),
            Some("partial")
        );
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\ncontent-length: 1 2\r\n\r\n").err(),
            Some("invalid content-length")
        );
        assert_eq!(
            head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").err(),
            Some("101 to a request that asked for no upgrade")
        );
    }

    #[test]
    fn numbers_are_written_in_decimal_and_hex() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
        let mut out = Out {
            buf: Vec::new(),
            at: 0,
            data: Bytes::new(),
            tail: b"",
        };
        out.push_hex(0x1a2b);
        out.push_hex(0);
        assert_eq!(out.buf, b"1a2b\r\n0\r\n");
    }

    /// Counts the wake-ups it is given.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_pooled_connection_writes_its_request_after_the_tasks_already_ready() {
        use tokio::io::AsyncWriteExt;

        for start in [Start::Now, Start::AfterReadyTasks] {
            let (conn, mut server) = connected().await;
            let (parts, body) = Request::get("/users")
                .header(header::HOST, "app")
                .body(RequestBody::empty())
                .expect("request")
                .into_parts();
            let mut exchange = Exchange::new(conn, parts, body, false, start);
            let wakes = std::sync::Arc::new(Wakes(Default::default()));
            let waker = std::task::Waker::from(wakes.clone());
            let mut cx = Context::from_waker(&waker);
            let woken = || wakes.0.load(std::sync::atomic::Ordering::Relaxed);

            // The first poll: the request goes out at once, or the task is
            // sent to the back of the queue with nothing written.
            assert!(exchange.poll_head(&mut cx).is_pending());
            match start {
                Start::Now => assert!(exchange.writer.written > 0, "{start:?}"),
                Start::AfterReadyTasks => {
                    assert_eq!(exchange.writer.written, 0, "{start:?}");
                    assert_eq!(woken(), 1, "{start:?}: woken to come back");
                    assert!(exchange.poll_head(&mut cx).is_pending());
                    assert!(exchange.writer.written > 0, "{start:?}");
                }
            }

            let got = read_head(&mut server).await;
            assert!(got.starts_with("GET /users HTTP/1.1\r\n"), "{start:?}");
            server
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .expect("answer");
            let head = std::future::poll_fn(|cx| exchange.poll_head(cx))
                .await
                .expect("response head");
            assert_eq!(head.status, StatusCode::NO_CONTENT, "{start:?}");
        }
    }

    /// Reads one request head from `server`.
    async fn read_head(server: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = server.read(&mut byte).await.expect("read");
            assert!(n > 0, "closed before the head ended");
            got.push(byte[0]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    fn request_with_secret() -> Request<RequestBody> {
        Request::get("/users")
            .header(header::HOST, "app")
            .header("x-secret", "1")
            .body(RequestBody::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn a_response_has_its_own_fields_only_though_it_reuses_the_requests_map() {
        use tokio::io::AsyncWriteExt;

        let (conn, mut server) = connected().await;
        let sending = tokio::spawn(send(conn, request_with_secret(), false, Start::Now));
        assert_eq!(
            read_head(&mut server).await,
            "GET /users HTTP/1.1\r\nhost: app\r\nx-secret: 1\r\n\r\n"
        );
        server
            .write_all(b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("answer");
        let response = sending.await.expect("joined").expect("response");
        let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-a", "content-length"]);
        assert_eq!(response.headers()["x-a"], "1");
    }

    #[tokio::test]
    async fn a_request_given_back_unanswered_keeps_its_fields() {
        let (conn, mut server) = connected().await;
        let sending = tokio::spawn(send(conn, request_with_secret(), false, Start::Now));
        read_head(&mut server).await;
        drop(server);
        let failed = sending.await.expect("joined").expect_err("no response");
        let request = failed.request.expect("unanswered: may go again");
        assert_eq!(request.uri(), "/users");
        assert_eq!(request.headers()[header::HOST], "app");
        assert_eq!(request.headers()["x-secret"], "1");
    }
}
