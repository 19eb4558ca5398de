//! Header rules with every template variable on both sides, request ids
//! (generated, kept from a trusted peer, replaced from an untrusted one),
//! and `X-Forwarded-For` behind `trusted_proxies`, through a capturing
//! backend and clients bound to chosen loopback addresses.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use bytes::Bytes;
use common::{Backend, HttpClient, send, start_proxy, url};
use http::{HeaderMap, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A client whose connections come from `ip` (any 127.0.0.0/8 address works).
fn client_from(ip: &str) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// (peer, headers sent, XFF upstream, `{client_ip}`).
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

const TRUSTED: &str = "127.0.0.1";
const UNTRUSTED: &str = "127.0.0.3";

async fn proxy_with_rules(users: &Backend) -> switchyard::app::Running {
    start_proxy(&format!(
        r#"[global]
access_log = "off"
trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "users"
  [[frontend.route]]
  path_prefix = "/api"
  backend = "users"
  request_headers = {{ set = {{ "X-Env" = "route", "X-Client" = "{{client_ip}}", "X-Id" = "id={{request_id}}", "X-Host" = "{{host}}", "X-Frontend" = "{{frontend}}" }}, add = {{ "X-Tag" = "from-route" }}, remove = ["X-Secret"] }}
  response_headers = {{ set = {{ "X-Server" = "{{server}}", "X-Env-Resp" = "route" }}, add = {{ "X-Resp-Tag" = "{{backend}}-{{client_ip}}" }}, remove = ["X-Public-Resp"] }}
[[backend]]
name = "users"
request_headers = {{ set = {{ "X-Env" = "backend", "X-Backend" = "{{backend}}" }}, remove = ["X-Debug"] }}
response_headers = {{ set = {{ "X-Env-Resp" = "backend", "X-Only-Backend" = "{{{{literal}}}}" }} }}
  [[backend.server]]
  name = "users-1"
  address = "{}"
"#,
        users.addr
    ))
    .await
}

async fn call(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap) {
    let mut request = Request::get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let (status, headers, _) = send(client, request.body(Full::new(Bytes::new())).unwrap()).await;
    (status, headers)
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn one(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map_or_else(|| "<none>".to_owned(), |v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn header_rules_use_every_variable_on_both_sides() {
    let users = Backend::start("users").await;
    let proxy = proxy_with_rules(&users).await;
    let (status, response) = call(
        &client_from(UNTRUSTED),
        &url(&proxy, "web", "/api/hop"),
        &[
            ("host", "app.example.com:8080"),
            ("x-debug", "1"),
            ("x-secret", "s"),
            ("x-tag", "from-client"),
            ("x-request-id", "client-chosen"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen = users.captured().pop().unwrap().headers;
    let id = one(&seen, "x-request-id");
    assert_eq!(
        one(&seen, "x-env"),
        "route",
        "route rules after the backend's"
    );
    assert_eq!(one(&seen, "x-backend"), "users");
    assert_eq!(one(&seen, "x-client"), UNTRUSTED);
    assert_eq!(one(&seen, "x-id"), format!("id={id}"));
    assert_eq!(one(&seen, "x-host"), "app.example.com:8080");
    assert_eq!(one(&seen, "x-frontend"), "web");
    assert_eq!(values(&seen, "x-tag"), ["from-client", "from-route"]);
    assert_eq!(one(&seen, "x-debug"), "<none>", "removed by the backend");
    assert_eq!(one(&seen, "x-secret"), "<none>", "removed by the route");

    assert_eq!(one(&response, "x-server"), "users-1");
    assert_eq!(one(&response, "x-env-resp"), "route");
    assert_eq!(one(&response, "x-only-backend"), "{literal}");
    assert_eq!(one(&response, "x-resp-tag"), format!("users-{UNTRUSTED}"));
    assert_eq!(
        one(&response, "x-public-resp"),
        "<none>",
        "removed by the route"
    );
    assert_eq!(one(&response, "x-served-by"), "users");
    assert_eq!(one(&response, "x-request-id"), id);

    // The default target has no route: only the backend's rules apply.
    let (_, response) = call(&client_from(UNTRUSTED), &url(&proxy, "web", "/plain"), &[]).await;
    let seen = users.captured().pop().unwrap().headers;
    assert_eq!(one(&seen, "x-env"), "backend");
    assert_eq!(one(&seen, "x-client"), "<none>");
    assert_eq!(one(&response, "x-env-resp"), "backend");
    proxy.shutdown().await;
}

#[tokio::test]
async fn request_ids_are_generated_kept_from_trusted_peers_and_replaced_otherwise() {
    let users = Backend::start("users").await;
    let proxy = proxy_with_rules(&users).await;
    let target = url(&proxy, "web", "/api/x");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    // None sent: one is generated, sent upstream and returned.
    let (_, response) = call(
        &client_from(UNTRUSTED),
        &target,
        &[("traceparent", traceparent)],
    )
    .await;
    let seen = users.captured().pop().unwrap().headers;
    let generated = one(&seen, "x-request-id");
    assert_eq!(generated.len(), 32, "{generated}");
    assert!(
        generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );
    assert_eq!(one(&response, "x-request-id"), generated);
    assert_eq!(
        one(&seen, "traceparent"),
        traceparent,
        "traceparent untouched"
    );
    let (_, again) = call(&client_from(UNTRUSTED), &target, &[]).await;
    assert_ne!(
        one(&again, "x-request-id"),
        generated,
        "a new id per request"
    );

    // From a trusted peer: kept.
    let (_, response) = call(&client_from(TRUSTED), &target, &[("x-request-id", "lb-42")]).await;
    let seen = users.captured().pop().unwrap().headers;
    assert_eq!(one(&seen, "x-request-id"), "lb-42");
    assert_eq!(one(&response, "x-request-id"), "lb-42");

    // From an untrusted peer: replaced.
    let (_, response) = call(
        &client_from(UNTRUSTED),
        &target,
        &[("x-request-id", "forged")],
    )
    .await;
    let seen = users.captured().pop().unwrap().headers;
    let replaced = one(&seen, "x-request-id");
    assert_ne!(replaced, "forged");
    assert_eq!(one(&response, "x-request-id"), replaced);

    // The proxy's own answers carry it too.
    let (status, response) = call(
        &client_from(TRUSTED),
        &url(&proxy, "web", "/a%2Fb"),
        &[("x-request-id", "lb-43")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(one(&response, "x-request-id"), "lb-43");
    proxy.shutdown().await;
}

#[tokio::test]
async fn forwarded_for_is_appended_from_trusted_peers_and_replaced_otherwise() {
    let users = Backend::start("users").await;
    let proxy = proxy_with_rules(&users).await;
    let target = url(&proxy, "web", "/api/x");
    let cases: &[Case] = &[
        // (peer, XFF sent, XFF upstream, {client_ip})
        (
            UNTRUSTED,
            &[("x-forwarded-for", "203.0.113.9")],
            UNTRUSTED,
            UNTRUSTED,
        ),
        (UNTRUSTED, &[], UNTRUSTED, UNTRUSTED),
        (TRUSTED, &[], TRUSTED, TRUSTED),
        (
            TRUSTED,
            &[("x-forwarded-for", "203.0.113.9")],
            "203.0.113.9, 127.0.0.1",
            "203.0.113.9",
        ),
        // The rightmost untrusted: 10.1.2.3 is a trusted hop.
        (
            TRUSTED,
            &[
                ("x-forwarded-for", "198.51.100.7, 203.0.113.9"),
                ("x-forwarded-for", "10.1.2.3"),
            ],
            "198.51.100.7, 203.0.113.9, 10.1.2.3, 127.0.0.1",
            "203.0.113.9",
        ),
        // Malformed entries are skipped, never an error.
        (
            TRUSTED,
            &[("x-forwarded-for", "203.0.113.9, not-an-ip, ,")],
            "203.0.113.9, not-an-ip, ,, 127.0.0.1",
            "203.0.113.9",
        ),
    ];
    for (peer, sent, upstream, client_ip) in cases {
        let (status, response) = call(&client_from(peer), &target, sent).await;
        assert_eq!(status, 200, "{peer} {sent:?}");
        let seen = users.captured().pop().unwrap().headers;
        assert_eq!(one(&seen, "x-forwarded-for"), *upstream, "{peer} {sent:?}");
        assert_eq!(one(&seen, "x-client"), *client_ip, "{peer} {sent:?}");
        assert_eq!(one(&response, "x-resp-tag"), format!("users-{client_ip}"));
    }
    proxy.shutdown().await;
}

/// The HPACK representations of the fields of a header block, by their
/// first bits: 'I' indexed, 'N' literal with incremental indexing (the
/// value enters the dynamic table), 'W' literal without indexing, 'V'
/// literal never indexed, 'S' a table size update. Strings are skipped by
/// their length, so Huffman coding does not matter.
fn representations(block: &[u8]) -> String {
    fn int(block: &[u8], at: &mut usize, prefix_bits: u32) -> usize {
        let max = (1usize << prefix_bits) - 1;
        let mut n = usize::from(block[*at]) & max;
        *at += 1;
        if n == max {
            let mut shift = 0;
            loop {
                let b = block[*at];
                *at += 1;
                n += usize::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        n
    }
    fn string(block: &[u8], at: &mut usize) {
        let len = int(block, at, 7);
        *at += len;
    }
    let mut kinds = String::new();
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        let (kind, prefix) = match b {
            0x80.. => ('I', 7),
            0x40..=0x7f => ('N', 6),
            0x20..=0x3f => ('S', 5),
            0x10..=0x1f => ('V', 4),
            _ => ('W', 4),
        };
        let name_index = int(block, &mut at, prefix);
        if matches!(kind, 'N' | 'V' | 'W') {
            if name_index == 0 {
                string(block, &mut at);
            }
            string(block, &mut at);
        }
        kinds.push(kind);
    }
    kinds
}

/// Over HTTP/2 the request id, one value per request, is sent as a literal
/// that is never indexed: it neither fills the client's HPACK table nor
/// evicts the fields that recur, which after the first answer are sent as
/// table indices.
#[tokio::test]
async fn over_http2_the_request_id_is_never_indexed_and_recurring_fields_are() {
    use common::h2_frames as raw;
    use tokio::io::AsyncWriteExt;

    let users = Backend::start("users").await;
    let proxy = proxy_with_rules(&users).await;
    let addr = proxy.frontend_addr("web").unwrap();
    let mut s = raw::connect(addr).await;
    for n in 0..4u32 {
        let stream = 1 + 2 * n;
        let block = raw::get("/api/x");
        s.write_all(&raw::frame(raw::HEADERS, 0x5, stream, &block))
            .await
            .unwrap();
        let response = loop {
            let f = raw::read(&mut s).await.unwrap();
            if f.kind == raw::HEADERS && f.stream == stream {
                break f;
            }
        };
        assert_eq!(raw::status(&response.payload), Some(200));
        let kinds = representations(&response.payload);
        assert_eq!(
            kinds.matches('V').count(),
            1,
            "one never-indexed field, the request id: {kinds}"
        );
        if n > 0 {
            // `date` may enter the table when the second turns.
            assert!(
                kinds.matches('N').count() <= 1,
                "recurring fields come from the table: {kinds}"
            );
        }
    }
    drop(s);
    proxy.shutdown().await;
}
