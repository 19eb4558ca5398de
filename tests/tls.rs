//! TLS termination end to end, with a CA made inside each test: SNI picks
//! certificates by their SAN names (exact, wildcard, default), h2 over ALPN,
//! old protocol versions refused, the plain frontend's redirect, HSTS,
//! `X-Forwarded-Proto: https`, certificate rotation through the config
//! reload, and backends over TLS verified against a CA and a name.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::tls::{TestCa, any_cert_config, connect, https_backend, presented, write_atomically};
use common::{Backend, client, get, refused_addr, start_from_file, start_proxy};
use switchyard::app::Running;
use switchyard::runtime::ReloadCause;

/// A config with a TLS frontend `tls` (certs as (cert, key) paths), a
/// plain frontend `web` redirecting to it, and backend `app` at `backend`.
async fn config(certs: &[(&Path, &Path)], backend: &Backend) -> String {
    let certs: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{ cert = {:?}, key = {:?} }}", c, k))
        .collect();
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "tls"
listen = "{}"
default_backend = "app"
tls = {{ certs = [ {} ] }}
hsts = "max-age=31536000"

[[frontend]]
name = "web"
listen = "{}"
default_backend = "app"
redirect_https = true

[[backend]]
name = "app"
  [[backend.server]]
  name = "a"
  address = "{}"
"#,
        refused_addr().await,
        certs.join(", "),
        refused_addr().await,
        backend.addr
    )
}

fn tls_addr(proxy: &Running) -> std::net::SocketAddr {
    proxy.frontend_addr("tls").unwrap()
}

#[tokio::test]
async fn sni_picks_the_certificate_by_exact_name_wildcard_and_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let first = ca.leaf(&["a.test"]);
    let second = ca.leaf(&["b.test", "*.wild.test"]);
    let (c1, k1) = first.write(dir.path(), "first");
    let (c2, k2) = second.write(dir.path(), "second");
    let backend = Backend::start("app").await;
    let proxy = start_proxy(&config(&[(&c1, &k1), (&c2, &k2)], &backend).await).await;
    let addr = tls_addr(&proxy);
    let trusting = ca.client_config(&[b"http/1.1"]);
    let any = any_cert_config(&[b"http/1.1"]);

    let cases: [(Option<&str>, &str, std::sync::Arc<rustls::ClientConfig>); 5] = [
        (Some("a.test"), first.fingerprint().leak(), trusting.clone()),
        (
            Some("b.test"),
            second.fingerprint().leak(),
            trusting.clone(),
        ),
        (
            Some("x.wild.test"),
            second.fingerprint().leak(),
            trusting.clone(),
        ),
        // No SNI, and a name no certificate has: the first certificate.
        (None, first.fingerprint().leak(), any.clone()),
        (
            Some("unknown.test"),
            first.fingerprint().leak(),
            any.clone(),
        ),
    ];
    for (sni, expected, config) in cases {
        let stream = connect(addr, config, sni).await.unwrap();
        assert_eq!(presented(&stream), expected, "sni {sni:?}");
    }
    // The wildcard covers one label only.
    let stream = connect(addr, any, Some("a.b.wild.test")).await.unwrap();
    assert_eq!(presented(&stream), first.fingerprint());
}

#[tokio::test]
async fn h2_is_negotiated_over_alpn_and_serves_a_request_with_https_headers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let leaf = ca.leaf(&["shop.test"]);
    let (c, k) = leaf.write(dir.path(), "shop");
    let backend = Backend::start("app").await;
    let proxy = start_proxy(&config(&[(&c, &k)], &backend).await).await;

    let stream = connect(
        tls_addr(&proxy),
        ca.client_config(&[b"h2", b"http/1.1"]),
        Some("shop.test"),
    )
    .await
    .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::get("https://shop.test/hello")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let _ = response.into_body().collect().await.unwrap();

    let seen = backend.captured();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");

    let counters = proxy
        .runtime
        .registry()
        .frontend_tls(&switchyard::model::FrontendName::new("tls"))
        .snapshot();
    assert_eq!(counters.handshakes, 1);
    assert!(counters.alpn.contains(&(switchyard::state::Alpn::H2, 1)));
}

#[tokio::test]
async fn the_proxys_own_answers_carry_hsts_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let (c, k) = ca.leaf(&["shop.test"]).write(dir.path(), "shop");
    let backend = Backend::start("app").await;
    // The only server refuses connections: the proxy answers 503 itself.
    let text = config(&[(&c, &k)], &backend)
        .await
        .replace(&backend.addr.to_string(), &refused_addr().await.to_string());
    let proxy = start_proxy(&text).await;

    let stream = connect(
        tls_addr(&proxy),
        ca.client_config(&[b"http/1.1"]),
        Some("shop.test"),
    )
    .await
    .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/hello")
        .header("host", "shop.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(backend.captured().is_empty());
}

/// A TLS 1.1 ClientHello, written out by hand: record version 3.2, hello
/// version 3.2, two TLS 1.1-era suites, no extensions.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x11; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // suites
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls_1_1_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let (c, k) = ca.leaf(&["shop.test"]).write(dir.path(), "shop");
    let backend = Backend::start("app").await;
    let proxy = start_proxy(&config(&[(&c, &k)], &backend).await).await;

    let mut tcp = tokio::net::TcpStream::connect(tls_addr(&proxy))
        .await
        .unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    // An alert record (21) and the connection closed: no ServerHello (22).
    assert_eq!(answer.first(), Some(&0x15), "answer {answer:?}");

    let name = switchyard::model::FrontendName::new("tls");
    common::eventually("the failed handshake counted", || async {
        let counters = proxy.runtime.registry().frontend_tls(&name).snapshot();
        counters
            .failures
            .contains(&(switchyard::state::HandshakeFailure::Incompatible, 1))
    })
    .await;
    // A failed handshake costs nothing else: the next client is served.
    let stream = connect(tls_addr(&proxy), ca.client_config(&[]), Some("shop.test")).await;
    assert!(stream.is_ok());
}

#[tokio::test]
async fn the_plain_frontend_redirects_to_https_on_the_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let (c, k) = ca.leaf(&["shop.test"]).write(dir.path(), "shop");
    let backend = Backend::start("app").await;
    let proxy = start_proxy(&config(&[(&c, &k)], &backend).await).await;
    let web = proxy.frontend_addr("web").unwrap();
    let port = tls_addr(&proxy).port();

    let request = Request::post(format!("http://{web}/cart/add?item=7&n=2"))
        .header("host", "Shop.Test:80")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = common::send(&client(), request).await;
    assert_eq!(status, 308);
    assert_eq!(
        headers["location"],
        format!("https://shop.test:{port}/cart/add?item=7&n=2")
    );
    assert_eq!(backend.hits(), 0, "a redirect never reaches a server");
}

/// Writes `config` for `certs` into `dir/switchyard.toml`.
fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("switchyard.toml");
    write_atomically(&path, text.as_bytes());
    path
}

/// Polls (every 20 ms, up to `limit`) until a new connection is served
/// the certificate with `fingerprint`.
async fn served_within(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    fingerprint: &str,
    limit: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(stream) = connect(addr, config.clone(), Some("shop.test")).await {
            if presented(&stream) == fingerprint {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_within_2s_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let old = ca.leaf(&["shop.test"]);
    let (c, k) = old.write(dir.path(), "shop");
    let backend = Backend::start("app").await;
    let file = write_config(dir.path(), &config(&[(&c, &k)], &backend).await);
    let proxy = start_from_file(&file, &dir.path().join("state")).await;
    let addr = tls_addr(&proxy);
    let trusting = ca.client_config(&[]);
    let open = connect(addr, trusting.clone(), Some("shop.test"))
        .await
        .unwrap();
    assert_eq!(presented(&open), old.fingerprint());

    // Replaced by rename, as certbot does; no reload by hand.
    let new = ca.leaf(&["shop.test"]);
    new.write(dir.path(), "shop");
    assert!(
        served_within(addr, &trusting, &new.fingerprint(), Duration::from_secs(2)).await,
        "the new certificate is served within 2 s"
    );
    assert_eq!(
        presented(&open),
        old.fingerprint(),
        "open connections untouched"
    );

    // A half-written certificate fails the reload; the last good one serves.
    let failed = proxy.runtime.reload_status().failed;
    write_atomically(&c, &new.cert_pem.as_bytes()[..100]);
    common::eventually("the bad certificate fails a reload", || async {
        proxy.runtime.reload_status().failed > failed
    })
    .await;
    let status = proxy.runtime.reload_status();
    let error = status.last_error().unwrap().to_string();
    assert!(error.contains("shop.pem"), "{error}");
    // The refusal shows per frontend in the API, the page and a metric.
    let tls = tls_stats(&proxy).await;
    assert_eq!(tls["certificate_load_failures"], 1, "{tls}");
    let shown = tls["certificate_error"].as_str().unwrap();
    assert!(
        shown.contains("shop.pem") && shown.contains("frontend[tls].tls.certs[0].cert"),
        "{shown}"
    );
    let (_, metrics) = admin_get(&proxy, "/metrics").await;
    assert!(
        metrics.contains(
            "switchyard_frontend_tls_certificate_load_failures_total{frontend=\"tls\"} 1"
        ),
        "{metrics}"
    );
    let (_, page) = admin_get(&proxy, "/").await;
    assert!(
        page.contains("New certificates refused"),
        "the page shows the refusal"
    );
    let after = connect(addr, trusting.clone(), Some("shop.test"))
        .await
        .unwrap();
    assert_eq!(presented(&after), new.fingerprint());

    // Every config reload reads the certificates again, too.
    let third = ca.leaf(&["shop.test"]);
    third.write(dir.path(), "shop");
    proxy.runtime.reload(ReloadCause::Api).await.unwrap();
    let next = connect(addr, trusting, Some("shop.test")).await.unwrap();
    assert_eq!(presented(&next), third.fingerprint());
    let tls = tls_stats(&proxy).await;
    assert!(
        tls["certificate_error"].is_null(),
        "cleared by a good load: {tls}"
    );
    assert_eq!(tls["certificate_load_failures"], 1, "{tls}");
}

/// A config whose backend `app` speaks TLS to `server` with `tls` and `host`.
fn backend_tls_config(server: std::net::SocketAddr, tls: &str, host: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "app"

[[backend]]
name = "app"
retries = 0
{host}
tls = {tls}
  [[backend.server]]
  name = "a"
  address = "{server}"
"#
    )
}

#[tokio::test]
async fn backend_tls_verifies_the_ca_and_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let other = TestCa::new("other ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let by_ca = https_backend("secure", &ca.leaf(&["backend.test", "127.0.0.1"])).await;
    let by_other = https_backend("impostor", &other.leaf(&["backend.test"])).await;
    let ca_tls = format!("{{ ca = {ca_file:?} }}");
    let cases = [
        // (server, tls, host override, expected status)
        (by_ca, ca_tls.clone(), r#"host = "backend.test""#, 200),
        (by_ca, ca_tls.clone(), "", 200),
        (by_ca, ca_tls.clone(), r#"host = "wrong.test""#, 502),
        (by_other, ca_tls.clone(), r#"host = "backend.test""#, 502),
        (by_other, "{ verify = false }".to_owned(), "", 200),
        // The built-in web roots do not know the test CA.
        (by_ca, "true".to_owned(), r#"host = "backend.test""#, 502),
    ];
    for (server, tls, host, expected) in cases {
        let proxy = start_proxy(&backend_tls_config(server, &tls, host)).await;
        let (status, headers, _) = get(&client(), &common::url(&proxy, "web", "/")).await;
        assert_eq!(status, expected, "tls = {tls}, {host}");
        if expected == 200 {
            assert_ne!(common::served_by(&headers), "-");
        }
        proxy.shutdown().await;
    }
}

/// GET on the admin server with the test token; returns status and body.
async fn admin_get(proxy: &Running, path: &str) -> (u16, String) {
    let request = Request::get(format!("http://{}{path}", proxy.admin.unwrap()))
        .header("authorization", "Bearer test-token")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = common::send(&client(), request).await;
    (status, body)
}

/// The `tls` part of frontend `tls` in `/api/stats`.
async fn tls_stats(proxy: &Running) -> serde_json::Value {
    let (status, body) = admin_get(proxy, "/api/stats").await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    stats["frontends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "tls")
        .unwrap()["tls"]
        .clone()
}

#[tokio::test]
async fn stats_api_metrics_and_page_show_certificates_and_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let leaf = ca.leaf(&["shop.test", "*.shop.test"]);
    let (c, k) = leaf.write(dir.path(), "shop");
    let backend = Backend::start("app").await;
    let proxy = start_proxy(&config(&[(&c, &k)], &backend).await).await;
    let addr = tls_addr(&proxy);
    drop(
        connect(addr, ca.client_config(&[b"h2"]), Some("shop.test"))
            .await
            .unwrap(),
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;

    common::eventually("both handshakes counted", || async {
        let tls = tls_stats(&proxy).await;
        tls["handshakes"] == 1
            && tls["failures"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["label"] == "incompatible" && f["count"] == 1)
    })
    .await;
    let tls = tls_stats(&proxy).await;
    let cert = &tls["certificates"][0];
    assert_eq!(
        cert["names"],
        serde_json::json!(["shop.test", "*.shop.test"])
    );
    assert_eq!(cert["fingerprint"], leaf.fingerprint());
    assert!(cert["expires"].as_str().unwrap().len() == 10);
    assert!(
        tls["alpn"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["label"] == "h2" && a["count"] == 1)
    );

    let (_, metrics) = admin_get(&proxy, "/metrics").await;
    let lines: Vec<&str> = metrics.lines().collect();
    let has = |needle: &str| lines.iter().any(|l| l.starts_with(needle));
    assert!(
        has(r#"switchyard_frontend_tls_handshakes_total{frontend="tls",version="TLSv1.3"} 1"#),
        "{metrics}"
    );
    assert!(has(
        r#"switchyard_frontend_tls_alpn_total{frontend="tls",protocol="h2"} 1"#
    ));
    assert!(has(
        r#"switchyard_frontend_tls_handshake_failures_total{frontend="tls",reason="incompatible"} 1"#
    ));
    assert!(
        has(&format!(
            r#"switchyard_tls_certificate_expiry_timestamp_seconds{{frontend="tls",fingerprint="{}"}}"#,
            leaf.fingerprint()
        )),
        "{metrics}"
    );

    let (_, page) = admin_get(&proxy, "/").await;
    assert!(page.contains(&leaf.fingerprint()));
    assert!(page.contains("shop.test, *.shop.test"));
}

#[tokio::test]
async fn check_reports_every_certificate_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let good = ca.leaf(&["shop.test"]);
    good.write(dir.path(), "good");
    ca.leaf(&["other.test"]).write(dir.path(), "other");
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    let mut expired = rcgen::CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    ca.sign(expired).write(dir.path(), "expired");
    ca.sign(rcgen::CertificateParams::new(Vec::<String>::new()).unwrap())
        .write(dir.path(), "nosan");
    let text = r#"[[frontend]]
name = "tls"
listen = "127.0.0.1:8443"
default_backend = "app"
tls = { certs = [
  { cert = "missing.pem", key = "good.key" },
  { cert = "garbage.pem", key = "good.key" },
  { cert = "good.pem", key = "other.key" },
  { cert = "expired.pem", key = "expired.key" },
  { cert = "nosan.pem", key = "nosan.key" },
] }

[[backend]]
name = "app"
  [[backend.server]]
  name = "a"
  address = "127.0.0.1:9000"
"#;
    let file = dir.path().join("switchyard.toml");
    std::fs::write(&file, text).unwrap();
    let errors = switchyard::config::load(&file).unwrap_err();
    let found: Vec<(usize, usize, &str)> = errors
        .errors
        .iter()
        .map(|e| (e.line, e.column, e.field.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (6, 12, "frontend[tls].tls.certs[0].cert"),
            (7, 12, "frontend[tls].tls.certs[1].cert"),
            (8, 30, "frontend[tls].tls.certs[2].key"),
            (9, 12, "frontend[tls].tls.certs[3].cert"),
            (10, 12, "frontend[tls].tls.certs[4].cert"),
        ],
        "{errors}"
    );
    let messages: Vec<&str> = errors.errors.iter().map(|e| e.message.as_str()).collect();
    assert!(messages[0].contains("missing.pem") && messages[0].contains("cannot read"));
    assert!(messages[1].contains("garbage.pem") && messages[1].contains("no CERTIFICATE"));
    assert!(messages[2].contains("other.key") && messages[2].contains("does not match"));
    assert!(messages[3].contains("expired.pem") && messages[3].contains("expired"));
    assert!(messages[4].contains("nosan.pem") && messages[4].contains("subjectAltName"));
}

/// Runs `tool` with `args` (stdin closed) when it is installed; `None`
/// (with a printed reason) when it is not.
async fn run_tool(tool: &str, args: &[&str]) -> Option<String> {
    let output = tokio::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) => Some(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("skipped: {tool} is not installed (scripts/install-test-deps.sh installs it)");
            None
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

#[tokio::test]
async fn curl_http2_and_openssl_alpn_h2_against_a_tls_frontend() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let (c, k) = ca.leaf(&["shop.test"]).write(dir.path(), "shop");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let backend = Backend::start("app").await;
    let proxy = start_proxy(&config(&[(&c, &k)], &backend).await).await;
    let port = tls_addr(&proxy).port();

    let resolve = format!("shop.test:{port}:127.0.0.1");
    let url = format!("https://shop.test:{port}/hello");
    let args = [
        "--http2",
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        ca_file,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &url,
    ];
    if let Some(out) = run_tool("curl", &args).await {
        assert_eq!(out.trim(), "2 200", "curl said: {out}");
    }

    let connect = format!("127.0.0.1:{port}");
    let args = [
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "shop.test",
        "-alpn",
        "h2",
        "-CAfile",
        ca_file,
        "-verify_return_error",
    ];
    if let Some(out) = run_tool("openssl", &args).await {
        assert!(out.contains("ALPN protocol: h2"), "openssl said: {out}");
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "openssl said: {out}"
        );
    }
}

#[tokio::test]
async fn health_checks_use_the_backends_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test ca");
    let other = TestCa::new("other ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let trusted = https_backend("secure", &ca.leaf(&["backend.test"])).await;
    let impostor = https_backend("impostor", &other.leaf(&["backend.test"])).await;
    let tls = format!("{{ ca = {ca_file:?} }}");
    let host = "host = \"backend.test\"\ncheck = { kind = \"http\", interval = \"50ms\" }";
    let passing = start_proxy(&backend_tls_config(trusted, &tls, host)).await;
    let failing = start_proxy(&backend_tls_config(impostor, &tls, host)).await;
    let server = |proxy: &Running| proxy.runtime.registry().get("app", "a").unwrap();
    common::eventually("the check over TLS passes", || async {
        server(&passing).check_status().last
            == Some(switchyard::state::CheckOutcome::Passed { status: Some(200) })
    })
    .await;
    common::eventually("the check against another CA fails", || async {
        matches!(
            server(&failing).check_status().last,
            Some(switchyard::state::CheckOutcome::Error { message }) if message.starts_with("tls")
        )
    })
    .await;
}
