//! The `switchyard` command: `check` on good and bad files, `run` answering
//! on its frontend and exiting 0 on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn switchyard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_example_configs() {
    for file in [
        "config/switchyard.toml",
        "config/demo.toml",
        "config/docker-compose.toml",
        "debian/switchyard.toml",
    ] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let (code, stdout, stderr) = switchyard(&["check", "-c", &path]);
        assert_eq!(code, 0, "{file}: {stderr}");
        assert!(stdout.contains(": ok: 1 frontend(s)"), "{stdout}");
    }
}

#[test]
fn check_reports_every_error_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[[frontend]]
name = "web"
listen = "0.0.0.0:8000"
default_backend = "monolith"

  [[frontend.route]]
  path_prefix = "/api/users"
  backend = "userz"

[[backend]]
name = "monolith"
timeouts = { connect = "5 parsecs" }

  [[backend.server]]
  name = "old-1"
  address = "monolith:8080"
  weight = 300
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = switchyard(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let shown = path.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{shown}:8:13: frontend[web].route[0].backend: unknown backend \"userz\""
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{shown}:12:24: backend[monolith].timeouts.connect: expected a duration"
        )),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{shown}:17:12: backend[monolith].server[old-1].weight:"
        )),
        "{stderr}"
    );
}

#[test]
fn check_names_an_unreadable_file() {
    let (code, _, stderr) = switchyard(&["check", "-c", "/nonexistent/switchyard.toml"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/switchyard.toml: cannot read"),
        "{stderr}"
    );
}

/// `run` serves its config, writes one access-log line per request on
/// stdout, and exits 0 on SIGTERM.
#[test]
fn run_serves_logs_and_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::Stdio;

    // A one-shot backend on a plain std socket.
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
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s1\"\naddress = \"{backend_addr}\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "run",
            "-c",
            config.to_str().unwrap(),
            "--state-dir",
            dir.path().to_str().unwrap(),
            "--threads",
            "3",
        ])
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
    let mut workers = None;
    let listen = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        if line.contains("worker threads started") {
            workers = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("workers="))
                .map(str::to_owned);
        }
        if let Some(at) = line.find("listen=") {
            if line.contains("frontend listening") && line.contains("frontend=web") {
                break line[at + 7..].split_whitespace().next().unwrap().to_owned();
            }
        }
    };
    // `--threads 3`: exactly three worker threads serve connections.
    assert_eq!(workers.as_deref(), Some("3"));
    let named_workers = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("switchyard-w"))
        .count();
    assert_eq!(named_workers, 3);
    let mut stream = TcpStream::connect(&listen).unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
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
        log[0].contains(" web app/s1 \"GET /hello HTTP/1.1\" 200 3 "),
        "{stdout}"
    );
}

#[test]
fn run_refuses_a_thread_count_out_of_range() {
    for threads in ["0", "1025"] {
        let (code, _, err) = switchyard(&["run", "--threads", threads]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--threads"), "{err}");
    }
}
