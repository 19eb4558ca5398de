//! Host and path routing, and header rewriting as a capturing backend sees it.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Backend, client, get, send, served_by, start_proxy, url};
use http::Request;
use http_body_util::Full;

async fn three_backends() -> (Backend, Backend, Backend, switchyard::app::Running) {
    let (mono, users, shop) = (
        Backend::start("mono").await,
        Backend::start("users").await,
        Backend::start("shop").await,
    );
    let proxy = start_proxy(&format!(
        r#"[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "monolith"
  [[frontend.route]]
  path_prefix = "/api/users"
  backend = "users"
  [[frontend.route]]
  host = "shop.example.com"
  backend = "shop"
  [[frontend.route]]
  host = "*.shop.example.com"
  path_prefix = "/cart"
  backend = "shop"
[[frontend]]
name = "nodefault"
listen = "127.0.0.2:0"
  [[frontend.route]]
  path_prefix = "/only"
  backend = "users"
[[backend]]
name = "monolith"
host = "old.example.com"
  [[backend.server]]
  name = "mono"
  address = "{}"
[[backend]]
name = "users"
  [[backend.server]]
  name = "users"
  address = "{}"
[[backend]]
name = "shop"
  [[backend.server]]
  name = "shop"
  address = "{}"
"#,
        mono.addr, users.addr, shop.addr
    ))
    .await;
    (mono, users, shop, proxy)
}

async fn route(
    proxy: &switchyard::app::Running,
    frontend: &str,
    host: &str,
    path: &str,
) -> (u16, String) {
    let request = Request::get(url(proxy, frontend, path))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = send(&client(), request).await;
    (status, served_by(&headers))
}

#[tokio::test]
async fn host_and_path_routes_pick_the_backend() {
    let (_m, _u, _s, proxy) = three_backends().await;
    let cases = [
        ("web", "localhost", "/", 200, "mono"),
        ("web", "localhost", "/api/users", 200, "users"),
        ("web", "localhost", "/api/users/7?x=1", 200, "users"),
        ("web", "localhost", "/api/usersettings", 200, "mono"),
        ("web", "localhost", "/api/x/../users/7", 200, "users"),
        ("web", "localhost", "/api/%75sers", 200, "users"),
        ("web", "shop.example.com", "/anything", 200, "shop"),
        ("web", "SHOP.example.com:8000", "/anything", 200, "shop"),
        ("web", "eu.shop.example.com", "/cart/1", 200, "shop"),
        ("web", "eu.shop.example.com", "/other", 200, "mono"),
        ("nodefault", "localhost", "/only/x", 200, "users"),
        ("nodefault", "localhost", "/elsewhere", 404, "-"),
    ];
    for (frontend, host, path, status, backend) in cases {
        assert_eq!(
            route(&proxy, frontend, host, path).await,
            (status, backend.to_owned()),
            "{frontend} {host} {path}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_404_names_no_internals() {
    let (_m, _u, _s, proxy) = three_backends().await;
    let (status, _, body) = get(&client(), &url(&proxy, "nodefault", "/nothing")).await;
    assert_eq!(status, 404);
    assert_eq!(body, "404 Not Found\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn headers_are_rewritten_on_the_way_to_the_server() {
    let (mono, users, _s, proxy) = three_backends().await;
    let request = Request::get(url(&proxy, "web", "/api/users/1?q=2"))
        .header("host", "app.example.com")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic abc")
        .header("te", "trailers")
        .header("x-app", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, _) = send(&client(), request).await;
    assert_eq!(status, 200);
    let seen = users.captured().pop().unwrap();
    let h = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(seen.target, "/api/users/1?q=2");
    assert_eq!(
        h("host").as_deref(),
        Some("app.example.com"),
        "client Host kept by default"
    );
    assert_eq!(
        h("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "XFF from an untrusted peer replaced by the peer"
    );
    assert_eq!(
        h("x-forwarded-proto").as_deref(),
        Some("http"),
        "proto replaced"
    );
    assert_eq!(h("x-forwarded-host").as_deref(), Some("app.example.com"));
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-authorization",
        "te",
        "connection",
        "transfer-encoding",
    ] {
        assert_eq!(h(gone), None, "{gone} must not reach the server");
    }
    assert_eq!(h("x-app").as_deref(), Some("kept"));

    // The monolith's backend sends its own Host.
    let request = Request::get(url(&proxy, "web", "/"))
        .header("host", "localhost:8000")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client(), request).await;
    let seen = mono.captured().pop().unwrap();
    assert_eq!(seen.headers.get("host").unwrap(), "old.example.com");
    assert_eq!(
        seen.headers.get("x-forwarded-host").unwrap(),
        "localhost:8000"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    let (_m, users, _s, proxy) = three_backends().await;
    let (status, headers, _) = get(&client(), &url(&proxy, "web", "/api/users/hop")).await;
    assert_eq!(status, 200);
    assert!(headers.get("keep-alive").is_none());
    assert!(
        headers.get("x-private-resp").is_none(),
        "named in the server's Connection"
    );
    assert_eq!(headers.get("x-public-resp").unwrap(), "1");
    assert_eq!(headers.get("x-served-by").unwrap(), "users");
    assert_eq!(users.hits(), 1);
    proxy.shutdown().await;
}
