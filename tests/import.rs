//! `switchyard import`: realistic HAProxy files in tests/import/ translate to
//! exactly the TOML beside them, every line not translated is listed with its
//! number, the outputs pass `switchyard check`, and the imported seed-style
//! config proxies real traffic.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Backend, client, eventually, get, served_by, start_proxy, url};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// Translates `NAME.cfg`, compares the TOML with `NAME.toml` exactly and the
/// skipped line numbers with `skipped`; returns the TOML.
fn check(name: &str, skipped: &[usize]) -> String {
    let cfg = format!("{name}.cfg");
    let t = switchyard::import::translate(&read(&cfg), &cfg)
        .unwrap_or_else(|e| panic!("{cfg} rejected:\n{e}"));
    let expected = read(&format!("{name}.toml"));
    assert_eq!(t.toml, expected, "{cfg}: the TOML differs from {name}.toml");
    let lines: Vec<usize> = t.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, skipped, "{cfg}: skipped lines: {:#?}", t.skipped);
    for s in &t.skipped {
        let comment = format!("#   line {}: {}: {}", s.line, s.text, s.reason);
        assert!(t.toml.contains(&comment), "{cfg}: no comment for {s:?}");
    }
    t.toml
}

fn reason(name: &str, line: usize) -> String {
    let cfg = format!("{name}.cfg");
    let t = switchyard::import::translate(&read(&cfg), &cfg).unwrap();
    t.skipped
        .iter()
        .filter(|s| s.line == line)
        .map(|s| s.reason.clone())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn passes_check(toml: &str, name: &str) {
    if let Err(e) = switchyard::config::parse(toml, Path::new(name)) {
        panic!("the import of {name} does not pass check:\n{e}\n{toml}");
    }
}

#[test]
fn seed_style_config_translates_exactly() {
    let toml = check("seed", &[5, 6, 16]);
    assert!(reason("seed", 16).contains("timeout http-request"));
    assert!(toml.contains(r#"check = { kind = "http", method = "HEAD", path = "/", host = "example.com", interval = "2s", rise = 2, fall = 3 }"#));
    assert!(toml.contains("the password becomes the admin token"));
    assert!(
        !toml.contains("s3cret"),
        "the stats password is not copied into the TOML"
    );
}

#[test]
fn host_and_path_acls_become_routes_or_are_skipped() {
    check("routing", &[14, 18, 24, 25, 26]);
    assert!(reason("routing", 24).contains("negated"));
    assert!(reason("routing", 25).contains("not by prefix"));
    assert!(reason("routing", 26).contains("without -i"));
    assert!(reason("routing", 14).contains("used by no translated rule"));
}

#[test]
fn cookies_backups_default_server_and_disabled_servers() {
    check("cookies", &[18, 19, 22, 22]);
    assert!(reason("cookies", 22).contains("does not check this server"));
    assert!(reason("cookies", 22).contains("`maxconn 50`"));
}

#[test]
fn unsupported_directives_are_each_listed() {
    let skipped = [
        3, 4, 5, 6, 10, 11, 15, 16, 17, 18, 19, 20, 21, 22, 26, 27, 28, 28, 29, 31, 32, 33, 34, 36,
        37,
    ];
    check("unsupported", &skipped);
    assert!(reason("unsupported", 3).contains("Lua"));
    assert!(reason("unsupported", 15).contains("stick tables"));
    assert!(reason("unsupported", 16).contains("TCP-level"));
    assert!(reason("unsupported", 18).contains("`src`"));
    assert!(reason("unsupported", 31).contains("mode http"));
}

#[test]
fn http_rules_error_pages_request_ids_and_tls() {
    let toml = check("rules", &[11, 22, 31, 45]);
    assert!(reason("rules", 31).contains("no use_backend with the same condition"));
    assert!(toml.contains("redirect_https = true"));
    assert!(toml.contains(r#"tls = { certs = [{ cert = "certs/site.pem" }] }"#));
    assert!(toml.contains(r#"rewrite = { regex = "^/v1/(.*)$", to = "/${1}" }"#));
}

#[test]
fn imports_using_todays_keys_pass_check() {
    for name in ["seed", "cookies", "unsupported"] {
        passes_check(&read(&format!("{name}.toml")), name);
    }
}

#[test]

fn imports_using_routing_rules_and_tls_pass_check() {
    passes_check(&read("routing.toml"), "routing");
    // rules.toml names files relative to its directory: an error page, a
    // maintenance page and a combined certificate + key PEM.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::create_dir_all(path.join("errors")).unwrap();
    std::fs::create_dir_all(path.join("certs")).unwrap();
    for file in ["errors/502.http", "errors/503.http", "maintenance.html"] {
        std::fs::write(path.join(file), "<h1>unavailable</h1>\n").unwrap();
    }
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(path)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut pem = std::fs::read(path.join("cert.pem")).unwrap();
    pem.extend(std::fs::read(path.join("key.pem")).unwrap());
    std::fs::write(path.join("certs/site.pem"), pem).unwrap();
    let toml = path.join("rules.toml");
    std::fs::write(&toml, read("rules.toml")).unwrap();
    if let Err(e) = switchyard::config::load(&toml) {
        panic!("the import of rules.cfg does not pass check:\n{e}");
    }
}

#[test]
fn an_address_on_the_section_line_is_a_bind() {
    let cfg = "defaults\n  mode http\nlisten app 127.0.0.1:8080\n  server s 10.0.0.1:80\n\
               listen stats :8001\n  stats enable\n";
    let t = switchyard::import::translate(cfg, "x.cfg").unwrap();
    assert!(t.skipped.is_empty(), "{:?}", t.skipped);
    assert!(t.toml.contains("listen = \"127.0.0.1:8080\""), "{}", t.toml);
    assert!(
        t.toml.contains("[admin]\nlisten = \"0.0.0.0:8001\""),
        "{}",
        t.toml
    );
    passes_check(&t.toml, "x");
}

/// `defer-accept` is what every Switchyard frontend does: translated, not
/// listed as skipped; another bind option still is.
#[test]
fn defer_accept_on_a_bind_is_translated_by_the_default() {
    let cfg = "defaults\n  mode http\nlisten app\n  bind 127.0.0.1:8080 defer-accept\n  \
               server s 10.0.0.1:80\n";
    let t = switchyard::import::translate(cfg, "x.cfg").unwrap();
    assert!(t.skipped.is_empty(), "{:?}", t.skipped);
    assert!(t.toml.contains("listen = \"127.0.0.1:8080\""), "{}", t.toml);
    passes_check(&t.toml, "x");
    let cfg = cfg.replace("defer-accept", "tfo");
    let t = switchyard::import::translate(&cfg, "x.cfg").unwrap();
    let reasons: Vec<&str> = t.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons, ["bind option `tfo` is not translated"]);
}

#[test]
fn tcp_smart_accept_is_translated_by_the_default() {
    let cfg = "defaults\n  mode http\n  option tcp-smart-accept\nfrontend f\n  bind :8080\n  \
               option tcp-smart-accept\n  default_backend b\nbackend b\n  server s 10.0.0.1:80\n";
    let t = switchyard::import::translate(cfg, "x.cfg").unwrap();
    assert!(t.skipped.is_empty(), "{:?}", t.skipped);
    passes_check(&t.toml, "x");
    // Turning it off is not translated: every frontend delays the ACK.
    let cfg = cfg.replace(
        "  option tcp-smart-accept\n  default",
        "  no option tcp-smart-accept\n  default",
    );
    let t = switchyard::import::translate(&cfg, "x.cfg").unwrap();
    let lines: Vec<usize> = t.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, [6], "{:?}", t.skipped);
}

#[test]
fn a_server_template_becomes_discover_and_its_resolvers_are_listed() {
    let cfg = "resolvers dns\n  nameserver ns1 10.0.0.2:53\n  hold valid 10s\n\
               defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend users\n\
               backend users\n  option httpchk GET /health\n  \
               server-template srv 1-3 users.local:8080 check inter 2s resolvers dns init-addr none\n  \
               server old 10.0.0.9:8080 check inter 2s\n  \
               server-template more 4 more.local:8080\n\
               backend bad\n  server-template srv 3\n";
    let rejected = switchyard::import::translate(cfg, "x.cfg").unwrap_err();
    assert_eq!(rejected.errors.len(), 1, "{rejected:?}");
    assert_eq!(rejected.errors[0].line, 15);
    let cfg = cfg.replace("backend bad\n  server-template srv 3\n", "");
    let t = switchyard::import::translate(&cfg, "x.cfg").unwrap();
    assert!(
        t.toml.contains(
            "# server-template: HAProxy's srv1 to srv3 are named users-1 to users-3 here\n\
             discover = { dns = \"users.local:8080\", max = 3 }\n"
        ),
        "{}",
        t.toml
    );
    assert!(t.toml.contains("interval = \"2s\""), "{}", t.toml);
    let skipped: Vec<(usize, &str)> = t
        .skipped
        .iter()
        .map(|s| (s.line, s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            (1, "the `resolvers` section has no Switchyard equivalent"),
            (2, "in a `resolvers` section"),
            (3, "in a `resolvers` section"),
            (11, "server option `init-addr none` is not translated"),
            (11, "server option `resolvers dns` is not translated"),
            (13, "Switchyard discovers one name per backend"),
        ]
    );
    passes_check(&t.toml, "x");
}

#[test]
fn a_rewrite_before_path_routes_is_skipped_not_approximated() {
    let cfg = "defaults\n  mode http\nfrontend f\n  bind :80\n  \
               http-request replace-path ^/api/(.*)$ /\\1\n  \
               use_backend b if { path_beg /api/ }\nbackend b\n  server s 10.0.0.1:80\n";
    let t = switchyard::import::translate(cfg, "x.cfg").unwrap();
    assert_eq!(t.skipped.len(), 1, "{:?}", t.skipped);
    assert_eq!(t.skipped[0].line, 5);
    assert!(t.skipped[0].reason.contains("already rewritten"));
}

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
fn command_exits_0_3_or_1_and_lists_skipped_lines_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let complete = dir.path().join("complete.cfg");
    std::fs::write(
        &complete,
        "defaults\n  mode http\nfrontend web\n  bind 127.0.0.1:8000\n  default_backend app\n\
         backend app\n  server a 127.0.0.1:9001\n",
    )
    .unwrap();
    let (code, stdout, stderr) = switchyard(&["import", complete.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("# Every line was translated."), "{stdout}");

    let seed = fixture("seed.cfg");
    let out = dir.path().join("seed.toml");
    let (code, stdout, stderr) = switchyard(&[
        "import",
        seed.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let shown = seed.display().to_string();
    for line in [5, 6, 16] {
        assert!(
            stderr.contains(&format!("{shown}:{line}: not translated: ")),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&out).unwrap(), read("seed.toml"));
    let (code, stdout, stderr) = switchyard(&["check", "-c", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let bad = fixture("bad.cfg");
    let (code, stdout, stderr) = switchyard(&["import", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.is_empty(),
        "nothing written for a rejected file: {stdout}"
    );
    for expected in [
        "bad.cfg:1: unknown keyword 'maxconn' out of section",
        "bad.cfg:5: unmatched quote",
        "bad.cfg:6: unable to find required backend 'nowhere'",
        "bad.cfg:7: no such ACL: no_such_acl",
        "bad.cfg:10: 'server' expects a name and an address",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
}

/// The seed-style file with real backends and free ports, translated and
/// served: round robin over both servers, and the check's Host header.
#[tokio::test]
async fn imported_seed_config_proxies_real_traffic() {
    let legacy = Backend::start("legacy").await;
    let new = Backend::start("new-stack").await;
    let cfg = read("seed.cfg")
        .replace("127.0.0.1:9001", &legacy.addr.to_string())
        .replace("127.0.0.1:9002", &new.addr.to_string())
        .replace("bind *:8000", "bind 127.0.0.1:0")
        .replace("bind 127.0.0.1:8001", "bind 127.0.0.1:0")
        .replace("inter 2s", "inter 50ms");
    let t = switchyard::import::translate(&cfg, "seed.cfg").unwrap();
    let proxy = start_proxy(&t.toml).await;
    let client = client();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, headers, _) = get(&client, &url(&proxy, "web", "/")).await;
        assert_eq!(status, 200);
        seen.push(served_by(&headers));
    }
    assert_eq!(seen, ["legacy", "new-stack", "legacy", "new-stack"]);
    for backend in [&legacy, &new] {
        eventually("a HEAD check with Host: example.com", || async {
            backend.captured().iter().any(|r| {
                r.method == http::Method::HEAD
                    && r.headers
                        .get(http::header::HOST)
                        .is_some_and(|h| h == "example.com")
            })
        })
        .await;
    }
    proxy.shutdown().await;
}

/// Small files and the lines they must list, each with a part of its reason.
#[test]
fn edge_cases_are_listed_with_their_reason() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        (
            "frontend f\n  mode http\n  bind :80\n  bind :81\n  default_backend b\n\
             backend b\n  mode http\n  server s 10.0.0.1:80\n",
            &[(4, "listens on one address")],
        ),
        (
            "defaults\n  mode http\nfrontend f\n  default_backend b\nbackend b\n  server s 10.0.0.1:80\n",
            &[(3, "no usable `bind`"), (4, "not translated")],
        ),
        (
            "defaults\n  mode http\nfrontend f\n  bind :80\n  http-request set-header X-A 1\n  \
             http-request del-header X-A\n  default_backend b\nbackend b\n  server s 10.0.0.1:80\n",
            &[(6, "order of the two cannot be kept")],
        ),
        (
            "defaults\n  mode http\nfrontend f\n  bind :80\n  \
             use_backend b if { path_beg /a } || { hdr_beg(host) -i x. }\n  \
             default_backend b\nbackend b\n  server s 10.0.0.1:80 check inter 1s\n  \
             server t 10.0.0.2:80 check inter 2s\n",
            &[
                (5, "not by prefix"),
                (9, "differ from the first checked server"),
            ],
        ),
        (
            "defaults\n  mode http\nlisten app\n  bind :80\n  stats enable\n  \
             server s 10.0.0.1:80\nlisten stats\n  bind :8001\n  stats enable\n\
             listen stats2\n  bind :8002\n  stats enable\n",
            &[
                (5, "admin server"),
                (10, "one admin server"),
                (11, "second stats"),
                (12, "second stats"),
            ],
        ),
        (
            "global\n  user \"$HAPROXY_USER\"\n",
            &[(2, "environment variable")],
        ),
        (
            "defaults\n  mode http\nlisten app :8080\n  server s 10.0.0.1:80\n\
             backend b from named\n  server s 10.0.0.1:80\n",
            &[(5, "named defaults")],
        ),
    ];
    for (cfg, expected) in cases {
        let t = switchyard::import::translate(cfg, "x.cfg")
            .unwrap_or_else(|e| panic!("{cfg}\nrejected: {e}"));
        let got: Vec<(usize, &str)> = t
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        assert_eq!(got.len(), expected.len(), "{cfg}\n{got:#?}");
        for ((line, reason), (want_line, part)) in got.iter().zip(expected.iter()) {
            assert_eq!(line, want_line, "{cfg}\n{got:#?}");
            assert!(
                reason.contains(part),
                "{cfg}\nline {line}: {reason:?} lacks {part:?}"
            );
        }
    }
}
