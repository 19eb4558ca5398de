//! The access log: one line per request on stdout, text or JSON. Each
//! thread that serves requests formats its own lines into a batch and hands
//! the batch to one writer task: the request path never waits on stdout,
//! and a request's record, with the names and buffers it shares, never
//! leaves the thread that served it.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Version};
use tokio::io::AsyncWriteExt;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc;

use crate::model::{BackendName, FrontendName, LogFormat, ServerName};
use crate::state::ProcessCounters;

/// Batches waiting for stdout at most; beyond it batches are dropped and
/// their lines counted.
const QUEUE: usize = 128;

/// Dropped lines are reported in the process log at most this often.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long a thread's lines gather after the first of a batch before the
/// batch goes to the writer: under load one hand-off and one write per
/// interval, not one per request (nginx's `flush=` does the same).
const GATHER: Duration = Duration::from_millis(20);

/// Bytes of lines in one batch, and in one write, at most: a fuller batch
/// goes to the writer at once.
const BATCH: usize = 60 * 1024;

/// What one request did, as logged.
#[derive(Debug)]
pub struct LogRecord {
    pub time: SystemTime,
    /// The TCP peer.
    pub client: SocketAddr,
    /// The client's address behind trusted proxies, when not the peer's.
    pub client_ip: Option<IpAddr>,
    pub request_id: Option<HeaderValue>,
    pub frontend: FrontendName,
    pub backend: Option<BackendName>,
    pub server: Option<ServerName>,
    pub method: Method,
    pub target: Option<http::uri::PathAndQuery>,
    /// The target sent to the server, when a rewrite changed it.
    pub rewritten: Option<http::uri::PathAndQuery>,
    pub version: Version,
    pub status: u16,
    pub bytes: u64,
    pub connect: Option<Duration>,
    pub response: Option<Duration>,
    pub total: Duration,
    /// Why the exchange ended early, if it did.
    pub termination: Option<&'static str>,
}

/// Lines formatted on one thread, on their way to stdout.
#[derive(Debug)]
struct Batch {
    text: Vec<u8>,
    lines: u64,
}

/// A handle to the log writer; cloning costs one atomic increment.
#[derive(Debug, Clone)]
pub struct AccessLog(Arc<Sink>);

#[derive(Debug)]
struct Sink {
    tx: mpsc::Sender<Batch>,
    format: LogFormat,
    /// Counts lines dropped on a full queue (`switchyard_access_log_dropped_total`).
    counters: Arc<ProcessCounters>,
}

thread_local! {
    /// This thread's lines not yet handed to the writer.
    static PENDING: RefCell<Pending> = const {
        RefCell::new(Pending {
            text: Vec::new(),
            lines: 0,
            owner: None,
            is_due: false,
        })
    };
}

/// One thread's batch in the making.
struct Pending {
    text: Vec<u8>,
    lines: u64,
    /// The log that `text`'s lines go to; set while there are any.
    owner: Option<AccessLog>,
    /// A task of this thread's runtime hands the batch over when `GATHER`
    /// has passed, or when the runtime ends (`HandOver`).
    is_due: bool,
}

impl Pending {
    /// Hands the lines gathered so far to their log's writer.
    fn hand_over(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        // The next batch starts with room for one like this one.
        let room = self.text.len().min(BATCH) + 256;
        let text = std::mem::replace(&mut self.text, Vec::with_capacity(room));
        let lines = std::mem::take(&mut self.lines);
        owner.send(Batch { text, lines });
    }
}

/// Owned by the task that a thread's first line of a batch starts: when
/// the task ends, after `GATHER` or with its runtime, the batch goes.
struct HandOver;

impl Drop for HandOver {
    fn drop(&mut self) {
        let _ = PENDING.try_with(|pending| {
            if let Ok(mut pending) = pending.try_borrow_mut() {
                pending.is_due = false;
                pending.hand_over();
            }
        });
    }
}

/// Whether tasks spawned here run on this thread, as on the proxy's
/// workers: then a thread's batch can wait for a task of its own.
fn runs_on_this_thread() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
}

impl AccessLog {
    /// The handle and the writer task to run; `stdout` is where lines go.
    pub fn new<W>(
        format: LogFormat,
        counters: Arc<ProcessCounters>,
        stdout: W,
    ) -> (AccessLog, impl Future<Output = ()>)
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        Self::with_queue(format, counters, stdout, QUEUE)
    }

    fn with_queue<W>(
        format: LogFormat,
        counters: Arc<ProcessCounters>,
        stdout: W,
        queue: usize,
    ) -> (AccessLog, impl Future<Output = ()>)
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let (tx, rx) = mpsc::channel(queue);
        let log = AccessLog(Arc::new(Sink {
            tx,
            format,
            counters: Arc::clone(&counters),
        }));
        (log, write_batches(rx, counters, stdout))
    }

    /// Adds the line of `record` to this thread's batch; never waits. The
    /// batch goes to the writer `GATHER` after its first line, or at once
    /// when it holds `BATCH` bytes. Called from the task that served the
    /// request; on a multi-threaded runtime (embedded starts only) a task
    /// may move between threads, and each line goes to the writer alone.
    pub fn record(&self, record: &LogRecord) {
        let gathered = PENDING.try_with(|pending| {
            let Ok(mut pending) = pending.try_borrow_mut() else {
                return None;
            };
            if !pending.is_due && !runs_on_this_thread() {
                return None;
            }
            if pending
                .owner
                .as_ref()
                .is_some_and(|owner| !Arc::ptr_eq(&owner.0, &self.0))
            {
                // Another log's lines (a second embedded proxy on this
                // thread) go first.
                pending.hand_over();
            }
            if pending.owner.is_none() {
                pending.owner = Some(self.clone());
            }
            format_record(&mut pending.text, record, self.0.format);
            pending.lines += 1;
            if pending.text.len() >= BATCH {
                pending.hand_over();
            }
            let is_new = !pending.is_due && pending.lines > 0;
            pending.is_due |= is_new;
            Some(is_new)
        });
        match gathered {
            Ok(Some(true)) => {
                let due = HandOver;
                tokio::spawn(async move {
                    let _due = due;
                    tokio::time::sleep(GATHER).await;
                });
            }
            Ok(Some(false)) => {}
            Ok(None) | Err(_) => {
                let mut text = Vec::new();
                format_record(&mut text, record, self.0.format);
                self.send(Batch { text, lines: 1 });
            }
        }
    }

    /// Queues a batch for the writer, or counts its lines as dropped when
    /// the queue is full.
    fn send(&self, batch: Batch) {
        let lines = batch.lines;
        if self.0.tx.try_send(batch).is_err() {
            self.0.counters.count_access_log_dropped(lines);
        }
    }
}

/// Reports dropped lines in the process log, at most once per
/// `DROP_REPORT_EVERY`, with the count since the last report.
struct DropReport {
    counters: Arc<ProcessCounters>,
    reported: u64,
    last: Option<tokio::time::Instant>,
}

impl DropReport {
    fn report(&mut self) {
        let total = self.counters.access_log_dropped();
        let now = tokio::time::Instant::now();
        if total > self.reported && self.last.is_none_or(|t| now >= t + DROP_REPORT_EVERY) {
            tracing::warn!(
                dropped = total - self.reported,
                total,
                "access log lines dropped: stdout is too slow"
            );
            self.reported = total;
            self.last = Some(now);
        }
    }
}

/// Writes the batches as they come; those already queued together go out
/// in one write of up to `BATCH` bytes.
async fn write_batches<W>(mut rx: mpsc::Receiver<Batch>, counters: Arc<ProcessCounters>, mut out: W)
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut drops = DropReport {
        counters,
        reported: 0,
        last: None,
    };
    while let Some(Batch { mut text, .. }) = rx.recv().await {
        while text.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => text.extend_from_slice(&more.text),
                Err(_) => break,
            }
        }
        drops.report();
        if out.write_all(&text).await.is_err() {
            return;
        }
        let _ = out.flush().await;
    }
    drops.report();
}

/// Appends one line for `r` to `buf`. The text line is put together from
/// its parts, without `core::fmt` for the numbers and the time: it runs
/// once per request on the thread that served it.
pub fn format_record(buf: &mut Vec<u8>, r: &LogRecord, format: LogFormat) {
    let request_id = r.request_id.as_ref().and_then(|v| v.to_str().ok());
    let rewritten = r.rewritten.as_ref().map(http::uri::PathAndQuery::as_str);
    match format {
        LogFormat::Text => {
            push_time(buf, r.time);
            buf.push(b' ');
            match r.client_ip {
                Some(ip) => push_ip(buf, ip),
                None => push_addr(buf, r.client),
            }
            buf.push(b' ');
            buf.extend_from_slice(r.frontend.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(r.backend.as_deref().unwrap_or("-").as_bytes());
            buf.push(b'/');
            buf.extend_from_slice(r.server.as_deref().unwrap_or("-").as_bytes());
            buf.extend_from_slice(b" \"");
            buf.extend_from_slice(r.method.as_str().as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(target(r).as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(version(r.version).as_bytes());
            buf.extend_from_slice(b"\" ");
            push_u64(buf, u64::from(r.status));
            buf.push(b' ');
            push_u64(buf, r.bytes);
            buf.extend_from_slice(b" connect_ms=");
            push_ms(buf, r.connect);
            buf.extend_from_slice(b" response_ms=");
            push_ms(buf, r.response);
            buf.extend_from_slice(b" total_ms=");
            push_ms(buf, Some(r.total));
            for (name, value) in [
                (&b" termination="[..], r.termination),
                (b" rewritten=", rewritten),
            ] {
                if let Some(value) = value {
                    buf.extend_from_slice(name);
                    buf.extend_from_slice(value.as_bytes());
                }
            }
            if r.client_ip.is_some() {
                buf.extend_from_slice(b" peer=");
                push_addr(buf, r.client);
            }
            if let Some(id) = request_id {
                buf.extend_from_slice(b" request_id=");
                buf.extend_from_slice(id.as_bytes());
            }
        }
        LogFormat::Json => {
            let ms = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
            let line = JsonLine {
                time: Rfc3339(r.time),
                client: r
                    .client_ip
                    .map_or(ClientAddr::Peer(r.client), ClientAddr::Ip),
                peer: r.client,
                request_id,
                rewritten,
                frontend: &r.frontend,
                backend: r.backend.as_deref().unwrap_or("-"),
                server: r.server.as_deref().unwrap_or("-"),
                method: r.method.as_str(),
                target: target(r),
                version: version(r.version),
                status: r.status,
                bytes: r.bytes,
                connect_ms: ms(r.connect),
                response_ms: ms(r.response),
                total_ms: r.total.as_secs_f64() * 1000.0,
                termination: r.termination,
            };
            if serde_json::to_writer(&mut *buf, &line).is_err() {
                return;
            }
        }
    }
    buf.push(b'\n');
}

/// The fields of a JSON line, in this order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    #[serde(serialize_with = "collect_str")]
    time: Rfc3339,
    #[serde(serialize_with = "collect_str")]
    client: ClientAddr,
    #[serde(serialize_with = "collect_str")]
    peer: SocketAddr,
    request_id: Option<&'a str>,
    rewritten: Option<&'a str>,
    frontend: &'a str,
    backend: &'a str,
    server: &'a str,
    method: &'a str,
    target: &'a str,
    version: &'static str,
    status: u16,
    bytes: u64,
    connect_ms: f64,
    response_ms: f64,
    total_ms: f64,
    termination: Option<&'static str>,
}

fn collect_str<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The client column: the address behind trusted proxies, or the peer's.
enum ClientAddr {
    Ip(IpAddr),
    Peer(SocketAddr),
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAddr::Ip(ip) => ip.fmt(f),
            ClientAddr::Peer(addr) => addr.fmt(f),
        }
    }
}

fn target(r: &LogRecord) -> &str {
    r.target.as_ref().map_or("-", |t| t.as_str())
}

/// As `Version`'s `Debug` writes it.
fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "-",
    }
}

fn push_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
fn push_digits(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let at = buf.len();
    buf.resize(at + width, b'0');
    for digit in buf[at..].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Milliseconds with three decimals (rounded to the microsecond), or
/// `-1.000` for none.
fn push_ms(buf: &mut Vec<u8>, d: Option<Duration>) {
    let Some(d) = d else {
        buf.extend_from_slice(b"-1.000");
        return;
    };
    let micros = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_nanos() + 500) / 1000);
    push_u64(buf, micros / 1000);
    buf.push(b'.');
    push_digits(buf, micros % 1000, 3);
}

fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_u64(buf, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

fn push_addr(buf: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(buf, IpAddr::V4(*v4.ip()));
            buf.push(b':');
            push_u64(buf, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(buf, "{addr}");
        }
    }
}

/// Appends a UTC timestamp like `2026-11-22T03:02:46.123Z`.
fn push_time(buf: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    match u64::try_from(y) {
        Ok(y) if y < 10_000 => push_digits(buf, y, 4),
        _ => {
            let _ = write!(buf, "{y}");
        }
    }
    for (sep, value) in [
        (b'-', u64::from(m)),
        (b'-', u64::from(d)),
        (b'T', rem / 3600),
        (b':', rem / 60 % 60),
        (b':', rem % 60),
    ] {
        buf.push(sep);
        push_digits(buf, value, 2);
    }
    buf.push(b'.');
    push_digits(buf, u64::from(since.subsec_millis()), 3);
    buf.push(b'Z');
}

/// A UTC timestamp like `2026-11-22T03:02:46.123Z`, for the JSON line.
struct Rfc3339(SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = Vec::with_capacity(24);
        push_time(&mut buf, self.0);
        f.write_str(std::str::from_utf8(&buf).map_err(|_| std::fmt::Error)?)
    }
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(r: &LogRecord, format: LogFormat) -> String {
        let mut buf = Vec::new();
        format_record(&mut buf, r, format);
        String::from_utf8(buf).expect("a line is UTF-8")
    }

    fn record() -> LogRecord {
        LogRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_795_316_566_123),
            client: "127.0.0.1:5000".parse().expect("addr"),
            client_ip: None,
            request_id: None,
            rewritten: None,
            frontend: FrontendName::new("web"),
            backend: Some(BackendName::new("monolith")),
            server: Some(ServerName::new("old-1")),
            method: Method::GET,
            target: Some(http::uri::PathAndQuery::from_static("/x?y=1")),
            version: Version::HTTP_11,
            status: 200,
            bytes: 12,
            connect: Some(Duration::from_micros(1500)),
            response: Some(Duration::from_millis(2)),
            total: Duration::from_millis(3),
            termination: None,
        }
    }

    #[test]
    fn text_line() {
        assert_eq!(
            line(&record(), LogFormat::Text),
            "2026-11-22T03:02:46.123Z 127.0.0.1:5000 web monolith/old-1 \"GET /x?y=1 HTTP/1.1\" 200 12 connect_ms=1.500 response_ms=2.000 total_ms=3.000\n"
        );
    }

    /// Reads what the writer wrote, up to `want` lines.
    async fn read_lines(reader: &mut tokio::io::DuplexStream, want: usize) -> String {
        use tokio::io::AsyncReadExt;
        let mut text = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while text.iter().filter(|&&b| b == b'\n').count() < want {
            // Paused clocks move on to this deadline when nothing comes.
            let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf));
            match read.await {
                Ok(Ok(0) | Err(_)) | Err(_) => break,
                Ok(Ok(n)) => text.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_beyond_the_queue_are_dropped_and_their_lines_counted() {
        let counters = Arc::new(ProcessCounters::default());
        // The writer is not run, so the queue of 1 fills and stays full.
        let (log, _writer) =
            AccessLog::with_queue(LogFormat::Text, Arc::clone(&counters), tokio::io::sink(), 1);
        for _ in 0..3 {
            log.record(&record());
        }
        tokio::time::sleep(GATHER * 2).await;
        assert_eq!(
            counters.access_log_dropped(),
            0,
            "the first batch is queued"
        );
        for _ in 0..4 {
            log.record(&record());
        }
        tokio::time::sleep(GATHER * 2).await;
        assert_eq!(counters.access_log_dropped(), 4, "the second is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn lines_are_gathered_for_a_while_and_written_together() {
        use tokio::io::AsyncReadExt;
        let counters = Arc::new(ProcessCounters::default());
        let (out, mut reader) = tokio::io::duplex(1 << 16);
        let (log, writer) = AccessLog::with_queue(LogFormat::Text, counters, out, 16);
        let writer = tokio::spawn(writer);
        for _ in 0..3 {
            log.record(&record());
        }
        tokio::task::yield_now().await;
        tokio::time::advance(GATHER / 2).await;
        let mut buf = vec![0u8; 4096];
        let early = tokio::time::timeout(Duration::ZERO, reader.read(&mut buf)).await;
        assert!(
            early.is_err(),
            "nothing is written before the batch has gathered"
        );
        tokio::time::advance(GATHER).await;
        let text = read_lines(&mut reader, 3).await;
        assert_eq!(
            text.lines().count(),
            3,
            "one write with the three lines: {text}"
        );
        drop(log);
        assert!(writer.await.is_ok(), "the writer ends with its queue");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_without_waiting_for_the_interval() {
        let counters = Arc::new(ProcessCounters::default());
        let (out, mut reader) = tokio::io::duplex(1 << 20);
        let (log, writer) = AccessLog::with_queue(LogFormat::Text, counters, out, 16);
        tokio::spawn(writer);
        let line = line(&record(), LogFormat::Text);
        let lines = BATCH / line.len() + 1;
        let started = tokio::time::Instant::now();
        for _ in 0..lines {
            log.record(&record());
        }
        let text = read_lines(&mut reader, lines).await;
        assert_eq!(text.lines().count(), lines);
        assert!(text.lines().all(|l| format!("{l}\n") == line), "{text}");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "written before any time passed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_threaded_runtime_each_line_goes_at_once() {
        let counters = Arc::new(ProcessCounters::default());
        // The writer is not run: what is queued stays in the queue.
        let (log, _writer) =
            AccessLog::with_queue(LogFormat::Text, counters, tokio::io::sink(), 16);
        log.record(&record());
        log.record(&record());
        assert_eq!(log.0.tx.capacity(), 14, "two batches of a line each");
    }

    #[test]
    fn lines_still_gathering_when_their_runtime_ends_are_handed_over() {
        let counters = Arc::new(ProcessCounters::default());
        let (out, mut reader) = tokio::io::duplex(1 << 16);
        let (log, writer) = AccessLog::with_queue(LogFormat::Text, counters, out, 16);
        let worker_log = log.clone();
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                worker_log.record(&record());
                worker_log.record(&record());
            });
            // Ends with the hand-over task still waiting.
            drop(runtime);
        });
        assert!(worker.join().is_ok(), "the worker thread ran");
        drop(log);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let text = runtime.block_on(async move {
            tokio::spawn(writer);
            read_lines(&mut reader, 2).await
        });
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_lines_are_reported_at_most_once_a_second() {
        let counters = Arc::new(ProcessCounters::default());
        let mut report = DropReport {
            counters: Arc::clone(&counters),
            reported: 0,
            last: None,
        };
        counters.count_access_log_dropped(1);
        report.report();
        assert_eq!(report.reported, 1, "the first drop is reported at once");
        counters.count_access_log_dropped(1);
        report.report();
        assert_eq!(report.reported, 1, "not again within the second");
        tokio::time::advance(DROP_REPORT_EVERY).await;
        report.report();
        assert_eq!(report.reported, 2, "a second later, with the new count");
    }

    /// The text line as `core::fmt` writes it: what `format_record` puts
    /// together by hand must read the same.
    fn text_by_fmt(r: &LogRecord) -> String {
        use std::fmt::Write as _;
        let ms = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
        let since = r.time.duration_since(UNIX_EPOCH).expect("after 1970");
        let (y, m, d) = civil_from_days(i64::try_from(since.as_secs() / 86_400).expect("days"));
        let rem = since.as_secs() % 86_400;
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z ",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            since.subsec_millis()
        );
        let _ = match r.client_ip {
            Some(ip) => write!(out, "{ip}"),
            None => write!(out, "{}", r.client),
        };
        let _ = write!(
            out,
            " {} {}/{} \"{} {} {:?}\" {} {} connect_ms={:.3} response_ms={:.3} total_ms={:.3}",
            r.frontend,
            r.backend.as_deref().unwrap_or("-"),
            r.server.as_deref().unwrap_or("-"),
            r.method,
            r.target.as_ref().map_or("-", |t| t.as_str()),
            r.version,
            r.status,
            r.bytes,
            ms(r.connect),
            ms(r.response),
            r.total.as_secs_f64() * 1000.0,
        );
        if let Some(t) = r.termination {
            let _ = write!(out, " termination={t}");
        }
        if let Some(t) = &r.rewritten {
            let _ = write!(out, " rewritten={t}");
        }
        if r.client_ip.is_some() {
            let _ = write!(out, " peer={}", r.client);
        }
        if let Some(id) = r.request_id.as_ref().and_then(|v| v.to_str().ok()) {
            let _ = write!(out, " request_id={id}");
        }
        out.push('\n');
        out
    }

    #[test]
    fn text_lines_read_as_core_fmt_writes_them() {
        let mut cases = Vec::new();
        for (micros, version, client, client_ip) in [
            (0, Version::HTTP_10, "10.0.0.1:1", None),
            (
                1,
                Version::HTTP_11,
                "255.255.255.255:65535",
                Some("192.0.2.1"),
            ),
            (999, Version::HTTP_2, "[2001:db8::1]:443", None),
            (
                1_000,
                Version::HTTP_09,
                "[::ffff:10.1.2.3]:80",
                Some("2001:db8::7"),
            ),
            (12_345_678, Version::HTTP_3, "127.0.0.1:5000", None),
            (86_400_000_001, Version::HTTP_11, "127.0.0.1:5000", None),
        ] {
            let mut r = record();
            r.time = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000 + micros * 7_919);
            r.version = version;
            r.client = client.parse().expect("addr");
            r.client_ip = client_ip.map(|ip| ip.parse().expect("ip"));
            r.total = Duration::from_micros(micros);
            r.connect = (micros % 2 == 0).then(|| Duration::from_micros(micros / 3));
            r.response = None;
            r.bytes = micros * 31;
            r.status = [101, 200, 304, 502, 503, 504][cases.len()];
            r.termination = (micros > 1_000).then_some("client");
            cases.push(r);
        }
        cases[0].backend = None;
        cases[0].server = None;
        cases[0].target = None;
        cases[1].time = UNIX_EPOCH;
        cases[2].time = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        for r in &cases {
            assert_eq!(line(r, LogFormat::Text), text_by_fmt(r));
        }
    }

    #[test]
    fn json_line() {
        let v: serde_json::Value =
            serde_json::from_str(&line(&record(), LogFormat::Json)).expect("json");
        assert_eq!(v["server"], "old-1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["time"], "2026-11-22T03:02:46.123Z");
        assert_eq!(v["client"], "127.0.0.1:5000");
        assert_eq!(v["peer"], "127.0.0.1:5000");
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["connect_ms"], 1.5);
        assert_eq!(v["response_ms"], 2.0);
        assert_eq!(v["request_id"], serde_json::Value::Null);
    }

    #[test]
    fn text_line_with_rewrite_client_ip_and_request_id() {
        let mut r = record();
        r.client_ip = Some("203.0.113.9".parse().expect("ip"));
        r.request_id = Some(HeaderValue::from_static("abc"));
        r.rewritten = Some(http::uri::PathAndQuery::from_static("/users/7?y=1"));
        let buf = line(&r, LogFormat::Text);
        assert!(
            buf.starts_with("2026-11-22T03:02:46.123Z 203.0.113.9 web "),
            "{buf}"
        );
        assert!(
            buf.ends_with(" rewritten=/users/7?y=1 peer=127.0.0.1:5000 request_id=abc\n"),
            "{buf}"
        );
        let v: serde_json::Value = serde_json::from_str(&line(&r, LogFormat::Json)).expect("json");
        assert_eq!(v["client"], "203.0.113.9");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["rewritten"], "/users/7?y=1");
        assert_eq!(v["target"], "/x?y=1");
    }
}
