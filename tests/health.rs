//! Active health checks against real sockets on 127.0.0.1: a small hyper
//! backend whose `/health` answer the test switches, a refused port, and MAINT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use switchyard::health::{CheckTarget, HealthChecker, NetProbe, Probe};
use switchyard::model::{
    AdminState, BackendName, CheckKind, CheckSpec, HttpCheck, ServerName, StatusRange,
};
use switchyard::state::{CheckOutcome, Health, ServerState};

/// `(method, path, host, user-agent)` of a request.
type Seen = (String, String, String, String);

/// A backend whose `/health` answers 200 while `is_healthy`, else 500.
struct Backend {
    addr: SocketAddr,
    is_healthy: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    /// The last request.
    last: Arc<Mutex<Option<Seen>>>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let backend = Backend {
            addr: listener.local_addr().expect("local addr"),
            is_healthy: Arc::new(AtomicBool::new(true)),
            requests: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(Mutex::new(None)),
        };
        let (is_healthy, requests, last) = (
            Arc::clone(&backend.is_healthy),
            Arc::clone(&backend.requests),
            Arc::clone(&backend.last),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (is_healthy, requests, last) = (
                    Arc::clone(&is_healthy),
                    Arc::clone(&requests),
                    Arc::clone(&last),
                );
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let header = |name| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let seen = (
                        req.method().to_string(),
                        req.uri().path().to_owned(),
                        header(http::header::HOST),
                        header(http::header::USER_AGENT),
                    );
                    *last.lock().expect("last") = Some(seen);
                    let status = if is_healthy.load(Ordering::SeqCst) {
                        200
                    } else {
                        500
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(b"state\n")));
                    *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        eprintln!("backend connection: {e}");
                    }
                });
            }
        });
        backend
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn http_spec() -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Http(HttpCheck {
            method: http::Method::GET,
            path: "/health".into(),
            host: None,
            expect: StatusRange { min: 200, max: 399 },
        }),
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
    }
}

fn target(server: &str, addr: SocketAddr, spec: CheckSpec) -> CheckTarget {
    let state = ServerState::new(
        BackendName::new("app"),
        ServerName::new(server),
        AdminState::Ready,
        1,
    );
    CheckTarget {
        state: Arc::new(state),
        addr: Some(addr),
        spec,
        host: Some("app.internal".into()),
        tls: None,
    }
}

/// A running checker; `stop` proves it ends on shutdown.
struct Checker {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _targets: watch::Sender<Arc<Vec<CheckTarget>>>,
}

impl Checker {
    fn start(targets: Vec<CheckTarget>) -> Checker {
        let (tx, rx) = watch::channel(Arc::new(targets));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(HealthChecker::new(rx, shutdown.clone()).run());
        Checker {
            shutdown,
            task,
            _targets: tx,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("checker ends on shutdown")
            .expect("checker task");
    }
}

/// Polls `cond` every 10 ms; panics after 5 s.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after 5s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn http_check_takes_a_failing_server_down_and_back_up() {
    let backend = Backend::start().await;
    let t = target("web1", backend.addr, http_spec());
    let state = Arc::clone(&t.state);
    let checker = Checker::start(vec![t]);

    let passed = CheckOutcome::Passed { status: Some(200) };
    eventually("a passed check", || {
        state.check_status().last == Some(passed.clone())
    })
    .await;
    assert_eq!(state.health(), Health::Up);
    assert!(state.is_checked());
    let seen = backend.last.lock().expect("last").clone();
    let expected = ("GET", "/health", "app.internal", "switchyard-check");
    let seen = seen.expect("a request");
    assert_eq!((&*seen.0, &*seen.1, &*seen.2, &*seen.3), expected);

    backend.is_healthy.store(false, Ordering::SeqCst);
    eventually("server marked DOWN", || state.health() == Health::Down).await;
    let status = state.check_status();
    assert_eq!(status.last, Some(CheckOutcome::BadStatus { status: 500 }));
    assert_eq!(status.consecutive_fail, 3);
    assert_eq!(state.transitions_down(), 1);

    backend.is_healthy.store(true, Ordering::SeqCst);
    eventually("server marked UP", || state.health() == Health::Up).await;
    assert_eq!(state.check_status().consecutive_ok, 2);
    checker.stop().await;
}

#[tokio::test]
async fn a_refused_port_goes_down_and_a_listening_one_stays_up() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("local addr")
    };
    let open = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp = CheckSpec {
        kind: CheckKind::Tcp,
        ..http_spec()
    };
    let targets = vec![
        target("http-refused", closed, http_spec()),
        target("tcp-refused", closed, tcp.clone()),
        target("tcp-open", open.local_addr().expect("local addr"), tcp),
    ];
    let states: Vec<_> = targets.iter().map(|t| Arc::clone(&t.state)).collect();
    let checker = Checker::start(targets);

    for state in &states[..2] {
        eventually("refused server marked DOWN", || {
            state.health() == Health::Down
        })
        .await;
        let last = state.check_status().last;
        assert!(
            matches!(&last, Some(CheckOutcome::Error { message }) if message.starts_with("connect:")),
            "{last:?}"
        );
    }
    let passed = Some(CheckOutcome::Passed { status: None });
    eventually("a passed tcp check", || {
        states[2].check_status().last == passed
    })
    .await;
    assert_eq!(states[2].health(), Health::Up);
    checker.stop().await;
}

#[tokio::test]
async fn maint_stops_checks_until_ready_again() {
    let (maint, witness) = (Backend::start().await, Backend::start().await);
    let t = target("maint", maint.addr, http_spec());
    let state = Arc::clone(&t.state);
    let checker = Checker::start(vec![t, target("witness", witness.addr, http_spec())]);
    eventually("both checked", || {
        maint.requests() >= 2 && witness.requests() >= 2
    })
    .await;

    state.set_admin_state(AdminState::Maint);
    let (stopped_at, witness_at) = (maint.requests(), witness.requests());
    // Three of the witness's intervals pass; a check in flight may still land.
    eventually("three witness checks", || {
        witness.requests() >= witness_at + 3
    })
    .await;
    assert!(maint.requests() <= stopped_at + 1, "checks ran in MAINT");
    assert_eq!(state.health(), Health::Up, "MAINT keeps the last health");

    state.set_admin_state(AdminState::Ready);
    let resumed_at = maint.requests();
    eventually("checks resume", || maint.requests() > resumed_at).await;
    checker.stop().await;
}

/// Answers every connection with `response` after reading the request head;
/// counts the answers the client hung up on before reading them whole.
async fn raw_server(response: impl Into<Bytes>) -> (SocketAddr, Arc<AtomicUsize>) {
    let response: Bytes = response.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let cut_short = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&cut_short);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (response, cut_short) = (response.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match stream.write_all(&response).await {
                    Ok(()) => stream.shutdown().await.unwrap_or_default(),
                    Err(_) => {
                        cut_short.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (addr, cut_short)
}

#[tokio::test]
async fn the_http_probe_judges_status_body_and_protocol() {
    let kind = http_spec().kind;

    let (not_found, _) =
        raw_server(&b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"[..]).await;
    let outcome = NetProbe.check(not_found, &kind, "h", None).await;
    assert_eq!(outcome, CheckOutcome::BadStatus { status: 404 });

    let (garbage, _) = raw_server(&b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..]).await;
    let outcome = NetProbe.check(garbage, &kind, "h", None).await;
    assert!(
        matches!(&outcome, CheckOutcome::Error { message } if message.starts_with("http:")),
        "{outcome:?}"
    );

    // A body far past the limit: judged by its status, not read to the end.
    let body_len = 16 * 1024 * 1024;
    let mut big = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n").into_bytes();
    big.resize(big.len() + body_len, b'x');
    let (big, cut_short) = raw_server(big).await;
    let outcome = NetProbe.check(big, &kind, "h", None).await;
    assert_eq!(outcome, CheckOutcome::Passed { status: Some(200) });
    let is_cut_short = || cut_short.load(Ordering::SeqCst) == 1;
    eventually("the probe hung up before the body's end", is_cut_short).await;
}
