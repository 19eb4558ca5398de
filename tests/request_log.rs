//! The access log line of `switchyard run` shows the request id (the one the
//! client got back), the path as received and the path after a rewrite.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

#[test]
fn access_log_shows_request_id_and_both_paths() {
    // A backend on a plain std socket answering every request.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in backend.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            r#"[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "app"
  [[frontend.route]]
  path_prefix = "/old"
  rewrite = {{ strip_prefix = "/old" }}
  backend = "app"
[[backend]]
name = "app"
  [[backend.server]]
  name = "s1"
  address = "{backend_addr}"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c", config.to_str().unwrap()])
        .args(["--state-dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A watchdog: if the test stalls, the child dies and the reads below end.
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let listen = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
        if let Some(at) = line.find("listen=") {
            if line.contains("frontend listening") && line.contains("frontend=web") {
                break line[at + 7..].split_whitespace().next().unwrap().to_owned();
            }
        }
    };
    let mut stream = TcpStream::connect(&listen).unwrap();
    stream
        .write_all(b"GET /old/hello?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_owned();

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let log: Vec<&str> = stdout.lines().collect();
    assert_eq!(log.len(), 1, "{stdout}");
    assert!(
        log[0].contains(" web app/s1 \"GET /old/hello?x=1 HTTP/1.1\" 200 3 "),
        "{stdout}"
    );
    assert!(log[0].contains(" rewritten=/hello?x=1"), "{stdout}");
    assert!(log[0].ends_with(&format!(" request_id={id}")), "{stdout}");
}
