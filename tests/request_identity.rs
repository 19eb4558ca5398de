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
