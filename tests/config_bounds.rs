//! Every bounded config value at its largest runs a request through a real
//! proxy without a panic (deadlines computed, CSV and metrics rendered), and
//! the next value up is an error that names its key and the bound, from
//! `config::parse` and from `switchyard check`, all reported at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::{Backend, client, get, send, start_proxy, url};
use http::Request;
use http_body_util::Full;

/// A config with every bounded key, each written as `{key}`.
const TEMPLATE: &str = r#"
[global]
access_log = "off"
grace = {grace}
max_connections = {max_connections}
threads = {threads}
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "app"
timeouts = { client_header = {client_header}, idle = {idle}, body_idle = {body_idle}, write_idle = {write_idle} }
limits = { max_uri = {max_uri}, max_head = {max_head}, max_headers = {max_headers}, max_header_line = {max_header_line} }
  [[frontend.route]]
  path_prefix = "/split"
  split = { app = {split} }
[[backend]]
name = "app"
retries = {retries}
passive_fall = {passive_fall}
max_body = {max_body}
timeouts = { connect = {connect}, response = {response}, tunnel = {tunnel} }
check = { kind = "http", interval = {interval}, timeout = {check_timeout}, rise = {rise}, fall = {fall} }
  [[backend.server]]
  name = "s"
  address = "{addr}"
  weight = {weight}
[[backend]]
name = "found"
discover = { dns = "localhost:9", every = {every}, max = {discover_max} }
"#;

/// (placeholder, the key errors name, largest accepted, next one up, what
/// the error says is expected).
const BOUNDS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "every",
        "backend[found].discover.every",
        r#""168h""#,
        r#""168h1ms""#,
        "from 1s to 168h (7 days)",
    ),
    (
        "discover_max",
        "backend[found].discover.max",
        "1024",
        "1025",
        "from 1 to 1024",
    ),
    (
        "grace",
        "global.grace",
        r#""168h""#,
        r#""168h1ms""#,
        "from 0s to 168h (7 days)",
    ),
    (
        "max_connections",
        "global.max_connections",
        "1000000",
        "1000001",
        "from 1 to 1000000",
    ),
    (
        "threads",
        "global.threads",
        "1024",
        "1025",
        "from 1 to 1024",
    ),
    (
        "client_header",
        "frontend[web].timeouts.client_header",
        r#""168h""#,
        r#""604800001ms""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "idle",
        "frontend[web].timeouts.idle",
        r#""7m167h""#,
        r#""168h1us""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "body_idle",
        "frontend[web].timeouts.body_idle",
        r#""168h""#,
        r#""168h1ms""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "write_idle",
        "frontend[web].timeouts.write_idle",
        r#""168h""#,
        r#""169h""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "max_uri",
        "frontend[web].limits.max_uri",
        "65534",
        "65535",
        "from 16 to 65534",
    ),
    (
        "max_head",
        "frontend[web].limits.max_head",
        "1048576",
        "1048577",
        "from 1024 to 1048576",
    ),
    (
        "max_headers",
        "frontend[web].limits.max_headers",
        "1000",
        "1001",
        "from 1 to 1000",
    ),
    (
        "max_header_line",
        "frontend[web].limits.max_header_line",
        "1048576",
        "1048577",
        "from 64 to 1048576",
    ),
    (
        "max_body",
        "backend[app].max_body",
        r#""1024GiB""#,
        "1099511627777",
        "from 1 byte to 1024GiB",
    ),
    (
        "split",
        "frontend[web].route[0].split.app",
        "256",
        "257",
        "from 0 to 256",
    ),
    (
        "retries",
        "backend[app].retries",
        "10",
        "11",
        "from 0 to 10",
    ),
    (
        "passive_fall",
        "backend[app].passive_fall",
        "1000",
        "1001",
        "from 0 to 1000",
    ),
    (
        "connect",
        "backend[app].timeouts.connect",
        r#""168h""#,
        r#""9223372036854775808s""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "response",
        "backend[app].timeouts.response",
        r#""168h""#,
        r#""169h""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "tunnel",
        "backend[app].timeouts.tunnel",
        r#""168h""#,
        r#""10081m""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "interval",
        "backend[app].check.interval",
        r#""168h""#,
        r#""168h1ms""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "check_timeout",
        "backend[app].check.timeout",
        r#""168h""#,
        r#""168h1ms""#,
        "from 1ms to 168h (7 days)",
    ),
    (
        "rise",
        "backend[app].check.rise",
        "1000",
        "1001",
        "from 1 to 1000",
    ),
    (
        "fall",
        "backend[app].check.fall",
        "1000",
        "1001",
        "from 1 to 1000",
    ),
    (
        "weight",
        "backend[app].server[s].weight",
        "256",
        "257",
        "from 0 to 256",
    ),
];

/// The template with the largest value everywhere but where `over` says.
fn config(addr: &str, over: &[&str]) -> String {
    let mut text = TEMPLATE.replace("{addr}", addr);
    for (key, _, max, next, _) in BOUNDS {
        let value = if over.contains(key) { next } else { max };
        text = text.replace(&format!("{{{key}}}"), value);
    }
    text
}

#[tokio::test]
async fn the_largest_value_of_every_bound_serves_requests_and_the_admin_exports() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(&backend.addr.to_string(), &[])).await;
    let c = client();
    for path in ["/", "/split/x"] {
        let (status, _, body) = get(&c, &url(&proxy, "web", path)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // The CSV computes HAProxy's `rise + fall - 1`; metrics read every counter.
    let admin = proxy.admin.unwrap();
    for path in ["/stats;csv", "/metrics", "/api/stats"] {
        let request = Request::get(format!("http://{admin}{path}"))
            .header("authorization", "Bearer test-token")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, body) = send(&c, request).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    proxy.shutdown().await;
}

#[test]
fn the_next_value_up_is_an_error_naming_the_key_and_the_bound() {
    for (key, field, _, next, expected) in BOUNDS {
        let text = config("127.0.0.1:9", &[key]);
        let errors = switchyard::config::parse(&text, Path::new("bounds.toml"))
            .expect_err(&format!("{key} = {next} is refused"))
            .to_string();
        let lines: Vec<&str> = errors.lines().collect();
        assert_eq!(lines.len(), 1, "{key}: {errors}");
        assert!(
            lines[0].contains(&format!(": {field}: expected ")) && lines[0].contains(expected),
            "{key}: {errors}"
        );
    }
}

#[test]
fn check_names_every_value_past_its_bound_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bounds.toml");
    let all: Vec<&str> = BOUNDS.iter().map(|b| b.0).collect();
    std::fs::write(&path, config("127.0.0.1:9", &all)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let named: BTreeMap<&str, usize> = BOUNDS
        .iter()
        .map(|(_, field, ..)| {
            let prefix = format!(": {field}: ");
            (
                *field,
                stderr.lines().filter(|l| l.contains(&prefix)).count(),
            )
        })
        .collect();
    assert!(named.values().all(|&n| n == 1), "{named:?}\n{stderr}");
    assert_eq!(stderr.lines().count(), BOUNDS.len(), "{stderr}");
}
