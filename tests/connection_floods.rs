//! Connection floods against the real binary, run under `prlimit` with a
//! low open-file limit: at the derived `max_connections` the proxy stops
//! accepting while the admin server keeps answering, and an accept loop
//! that runs out of descriptors (EMFILE) backs off, logs at most once a
//! second, and serves again once descriptors are free.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A backend answering every request with 200, on a std thread per
/// connection.
fn backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0
                        || stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The binary under `prlimit --nofile=<open_files>`, with its stderr lines
/// collected, and its frontend and admin addresses.
struct Proxy {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    frontend: String,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(open_files: u32, global: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[global]\naccess_log = \"off\"\n{global}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
             timeouts = {{ client_header = \"30s\" }}\n\
             [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"{}\"\n",
            backend()
        ),
    )
    .unwrap();
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={open_files}:{open_files}"))
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", config.to_str().unwrap()])
        .args(["--state-dir", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let address = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = lines.lock().unwrap().iter().find_map(|l| {
                let at = l.find("listen=")?;
                l.contains(what)
                    .then(|| l[at + 7..].split_whitespace().next().unwrap().to_owned())
            });
            if let Some(found) = found {
                return found;
            }
            assert!(Instant::now() < deadline, "no {what} line");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let frontend = address("frontend listening");
    let admin = address("admin server listening");
    Proxy {
        child,
        lines,
        frontend,
        admin,
        _dir: dir,
    }
}

/// A GET on a new connection; the status line, or `None` if nothing came
/// within `wait`.
fn get(addr: &str, host: &str, wait: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(wait)).unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = vec![0u8; 512];
    let n = stream.read(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    text.lines().next().map(str::to_owned)
}

fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn count(proxy: &Proxy, text: &str) -> usize {
    proxy
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(text))
        .count()
}

#[test]
fn at_the_derived_limit_the_proxy_stops_accepting_and_the_admin_still_answers() {
    // 128 descriptors: (128 - 64) / 2 = 32 client connections.
    let proxy = start(128, "");
    assert_eq!(count(&proxy, "max_connections=32"), 1);
    // Each sends the first byte of a request: the kernel hands a
    // connection to the proxy only once its client has spoken
    // (`TCP_DEFER_ACCEPT`).
    let held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = TcpStream::connect(&proxy.frontend).unwrap();
            stream.write_all(b"G").unwrap();
            stream
        })
        .collect();
    let admin_host = proxy.admin.clone();
    for _ in 0..5 {
        let status = get(&proxy.admin, &admin_host, Duration::from_secs(5));
        assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"), "admin answers");
    }
    // A request beyond the limit waits in the kernel backlog.
    let mut waiting = TcpStream::connect(&proxy.frontend).unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(waiting.read(&mut buf).is_err(), "served beyond the limit");
    assert_eq!(
        count(&proxy, "accept failed"),
        0,
        "no EMFILE: the reserve held"
    );
    drop(held);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = waiting.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "served once others left"
    );
}

#[test]
fn the_accept_loop_survives_emfile_and_logs_at_most_once_a_second() {
    // An explicit limit far above the descriptors: accept runs out (EMFILE).
    let mut proxy = start(64, "max_connections = 10000");
    // Each sends the first byte of a request: the kernel hands a
    // connection to the proxy only once its client has spoken
    // (`TCP_DEFER_ACCEPT`).
    let held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = TcpStream::connect(&proxy.frontend).unwrap();
            stream.write_all(b"G").unwrap();
            stream
        })
        .collect();
    eventually("accept fails with EMFILE", || {
        count(&proxy, "accept failed") >= 1
    });
    let first = Instant::now();
    // A window of failing accepts (backing off every 50 ms).
    std::thread::sleep(Duration::from_millis(1500));
    let logged = count(&proxy, "accept failed");
    let seconds = first.elapsed().as_secs_f64();
    assert!(
        (logged as f64) <= seconds + 1.0,
        "{logged} lines in {seconds:.1} s"
    );
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy is still running"
    );
    drop(held);
    eventually("the frontend serves again", || {
        get(&proxy.frontend, "x", Duration::from_secs(2)).as_deref() == Some("HTTP/1.1 200 OK")
    });
}
