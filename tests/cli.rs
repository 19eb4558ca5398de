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
    for file in ["config/switchyard.toml", "config/demo.toml"] {
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
