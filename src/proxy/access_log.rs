//! The access log: one line per request on stdout, text or JSON, written by
//! one task so the request path never waits on stdout.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Version};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::model::{BackendName, FrontendName, LogFormat, ServerName};
use crate::state::ProcessCounters;

/// Lines waiting for stdout at most; beyond it lines are dropped and counted.
const QUEUE: usize = 8192;

/// Dropped lines are reported in the process log at most this often.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long lines gather after the first of a batch before they are
/// written: under load one write per interval, not one write and one
/// wake-up of the writer per request (nginx's `flush=` does the same).
const GATHER: Duration = Duration::from_millis(20);

/// Bytes of lines written at once at most.
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

/// A handle to the log writer; cloning costs one atomic increment.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<LogRecord>,
    /// Counts lines dropped on a full queue (`switchyard_access_log_dropped_total`).
    counters: Arc<ProcessCounters>,
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
        let log = AccessLog {
            tx,
            counters: Arc::clone(&counters),
        };
        (log, write_lines(rx, format, counters, stdout))
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: LogRecord) {
        if self.tx.try_send(record).is_err() {
            self.counters.count_access_log_dropped();
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

async fn write_lines<W>(
    mut rx: mpsc::Receiver<LogRecord>,
    format: LogFormat,
    counters: Arc<ProcessCounters>,
    mut out: W,
) where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut drops = DropReport {
        counters,
        reported: 0,
        last: None,
    };
    let mut buf = String::with_capacity(BATCH + 4096);
    while let Some(record) = rx.recv().await {
        format_record(&mut buf, &record, format);
        // The rest of the batch gathers in the queue meanwhile; sends do
        // not wake this task while it sleeps.
        tokio::time::sleep(GATHER).await;
        loop {
            let mut is_drained = true;
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(record) => format_record(&mut buf, &record, format),
                    Err(_) => break,
                }
            }
            if buf.len() >= BATCH {
                is_drained = false;
            }
            drops.report();
            if out.write_all(buf.as_bytes()).await.is_err() {
                return;
            }
            buf.clear();
            if is_drained {
                break;
            }
        }
        let _ = out.flush().await;
    }
    drops.report();
}

/// Appends one line for `r` to `buf`.
pub fn format_record(buf: &mut String, r: &LogRecord, format: LogFormat) {
    let ms = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
    let target = r.target.as_ref().map_or("-", |t| t.as_str());
    let backend = r.backend.as_deref().unwrap_or("-");
    let server = r.server.as_deref().unwrap_or("-");
    let time = Rfc3339(r.time);
    let request_id = r.request_id.as_ref().and_then(|v| v.to_str().ok());
    let rewritten = r.rewritten.as_ref().map(http::uri::PathAndQuery::as_str);
    let _ = match format {
        LogFormat::Text => {
            let _ = write!(buf, "{time} ");
            let _ = match r.client_ip {
                Some(ip) => write!(buf, "{ip}"),
                None => write!(buf, "{}", r.client),
            };
            let _ = write!(
                buf,
                " {frontend} {backend}/{server} \"{method} {target} {version:?}\" {status} {bytes} connect_ms={connect:.3} response_ms={response:.3} total_ms={total:.3}",
                frontend = r.frontend,
                method = r.method,
                version = r.version,
                status = r.status,
                bytes = r.bytes,
                connect = ms(r.connect),
                response = ms(r.response),
                total = r.total.as_secs_f64() * 1000.0,
            );
            if let Some(t) = r.termination {
                let _ = write!(buf, " termination={t}");
            }
            if let Some(t) = rewritten {
                let _ = write!(buf, " rewritten={t}");
            }
            if r.client_ip.is_some() {
                let _ = write!(buf, " peer={}", r.client);
            }
            if let Some(id) = request_id {
                let _ = write!(buf, " request_id={id}");
            }
            buf.push('\n');
            Ok(())
        }
        LogFormat::Json => {
            let client = match r.client_ip {
                Some(ip) => ip.to_string(),
                None => r.client.to_string(),
            };
            writeln!(
                buf,
                "{}",
                serde_json::json!({
                    "time": time.to_string(),
                    "client": client,
                    "peer": r.client.to_string(),
                    "request_id": request_id,
                    "rewritten": rewritten,
                    "frontend": &*r.frontend,
                    "backend": backend,
                    "server": server,
                    "method": r.method.as_str(),
                    "target": target,
                    "version": format!("{:?}", r.version),
                    "status": r.status,
                    "bytes": r.bytes,
                    "connect_ms": ms(r.connect),
                    "response_ms": ms(r.response),
                    "total_ms": r.total.as_secs_f64() * 1000.0,
                    "termination": r.termination,
                })
            )
        }
    };
}

/// A UTC timestamp like `2026-11-22T03:02:46.123Z`.
struct Rfc3339(SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            since.subsec_millis()
        )
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
        let mut buf = String::new();
        format_record(&mut buf, &record(), LogFormat::Text);
        assert_eq!(
            buf,
            "2026-11-22T03:02:46.123Z 127.0.0.1:5000 web monolith/old-1 \"GET /x?y=1 HTTP/1.1\" 200 12 connect_ms=1.500 response_ms=2.000 total_ms=3.000\n"
        );
    }

    #[tokio::test]
    async fn lines_beyond_the_queue_are_dropped_and_counted() {
        let counters = Arc::new(ProcessCounters::default());
        // The writer is not run, so the queue of 2 fills and stays full.
        let (log, _writer) =
            AccessLog::with_queue(LogFormat::Text, Arc::clone(&counters), tokio::io::sink(), 2);
        for _ in 0..10 {
            log.record(record());
        }
        assert_eq!(counters.access_log_dropped(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn lines_are_gathered_for_a_while_and_written_together() {
        use tokio::io::AsyncReadExt;
        let counters = Arc::new(ProcessCounters::default());
        let (out, mut reader) = tokio::io::duplex(1 << 16);
        let (log, writer) = AccessLog::with_queue(LogFormat::Text, counters, out, 16);
        let writer = tokio::spawn(writer);
        for _ in 0..3 {
            log.record(record());
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
        let Ok(n) = reader.read(&mut buf).await else {
            panic!("the log pipe failed")
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(
            text.lines().count(),
            3,
            "one write with the three lines: {text}"
        );
        drop(log);
        assert!(writer.await.is_ok(), "the writer ends with its queue");
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_lines_are_reported_at_most_once_a_second() {
        let counters = Arc::new(ProcessCounters::default());
        let mut report = DropReport {
            counters: Arc::clone(&counters),
            reported: 0,
            last: None,
        };
        counters.count_access_log_dropped();
        report.report();
        assert_eq!(report.reported, 1, "the first drop is reported at once");
        counters.count_access_log_dropped();
        report.report();
        assert_eq!(report.reported, 1, "not again within the second");
        tokio::time::advance(DROP_REPORT_EVERY).await;
        report.report();
        assert_eq!(report.reported, 2, "a second later, with the new count");
    }

    #[test]
    fn json_line() {
        let mut buf = String::new();
        format_record(&mut buf, &record(), LogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&buf).expect("json");
        assert_eq!(v["server"], "old-1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["time"], "2026-11-22T03:02:46.123Z");
    }

    #[test]
    fn text_line_with_rewrite_client_ip_and_request_id() {
        let mut r = record();
        r.client_ip = Some("203.0.113.9".parse().expect("ip"));
        r.request_id = Some(HeaderValue::from_static("abc"));
        r.rewritten = Some(http::uri::PathAndQuery::from_static("/users/7?y=1"));
        let mut buf = String::new();
        format_record(&mut buf, &r, LogFormat::Text);
        assert!(
            buf.starts_with("2026-11-22T03:02:46.123Z 203.0.113.9 web "),
            "{buf}"
        );
        assert!(
            buf.ends_with(" rewritten=/users/7?y=1 peer=127.0.0.1:5000 request_id=abc\n"),
            "{buf}"
        );
        buf.clear();
        format_record(&mut buf, &r, LogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&buf).expect("json");
        assert_eq!(v["client"], "203.0.113.9");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["rewritten"], "/users/7?y=1");
        assert_eq!(v["target"], "/x?y=1");
    }
}
