//! Routing rules through real sockets and capturing backends: every match
//! condition and their AND, path rewrites, redirects, fixed answers, deny,
//! error pages and per-route response timeouts.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Backend, client, get, send, served_by, start_proxy, url};
use http::Request;
use http_body_util::Full;
use switchyard::app::Running;

/// Frontend "web": default "mono", a route per condition kind, an AND route.
async fn condition_proxy() -> (Backend, Backend, Running) {
    let (mono, new) = (Backend::start("mono").await, Backend::start("new").await);
    let proxy = start_proxy(&format!(
        r#"[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "mono"
  [[frontend.route]]
  path = "/exact"
  backend = "new"
  [[frontend.route]]
  path_regex = "^/v[0-9]+/"
  backend = "new"
  [[frontend.route]]
  path_prefix = "/m"
  methods = ["DELETE"]
  backend = "new"
  [[frontend.route]]
  headers = {{ "X-Canary" = "1", "X-Beta" = "*" }}
  backend = "new"
  [[frontend.route]]
  cookies = {{ beta = "yes" }}
  backend = "new"
  [[frontend.route]]
  query = {{ v = "2" }}
  backend = "new"
[[frontend]]
name = "and"
listen = "127.0.0.2:0"
default_backend = "mono"
  [[frontend.route]]
  host = "shop.example.com"
  path_prefix = "/api"
  methods = ["GET", "HEAD"]
  headers = {{ "X-Team" = "core" }}
  cookies = {{ beta = "yes" }}
  query = {{ v = "2" }}
  backend = "new"
[[backend]]
name = "mono"
  [[backend.server]]
  name = "mono"
  address = "{}"
[[backend]]
name = "new"
  [[backend.server]]
  name = "new"
  address = "{}"
"#,
        mono.addr, new.addr
    ))
    .await;
    (mono, new, proxy)
}

type Headers<'a> = &'a [(&'a str, &'a str)];

async fn served(
    proxy: &Running,
    frontend: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(url(proxy, frontend, path));
    if !headers.iter().any(|(k, _)| *k == "host") {
        request = request.header("host", "localhost");
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let (status, headers, _) =
        send(&client(), request.body(Full::new(Bytes::new())).unwrap()).await;
    (status, served_by(&headers))
}

#[tokio::test]
async fn every_condition_kind_and_their_and() {
    let (_mono, _new, proxy) = condition_proxy().await;
    let shop = ("host", "shop.example.com");
    let cases: &[(&str, &str, Headers, &str)] = &[
        // path: exact only
        ("GET", "/exact", &[], "new"),
        ("GET", "/exact/more", &[], "mono"),
        ("GET", "/exactly", &[], "mono"),
        // path_regex, on the normalised path
        ("GET", "/v2/users", &[], "new"),
        ("GET", "/x/../v3/users", &[], "new"),
        ("GET", "/vx/users", &[], "mono"),
        // methods (with path_prefix)
        ("DELETE", "/m/1", &[], "new"),
        ("GET", "/m/1", &[], "mono"),
        // headers: exact value and "*" (both must hold)
        (
            "GET",
            "/h",
            &[("x-canary", "1"), ("x-beta", "anything")],
            "new",
        ),
        (
            "GET",
            "/h",
            &[("x-canary", "2"), ("x-beta", "anything")],
            "mono",
        ),
        ("GET", "/h", &[("x-canary", "1")], "mono"),
        // cookies, among others and in a second Cookie header
        ("GET", "/c", &[("cookie", "a=1; beta=yes")], "new"),
        (
            "GET",
            "/c",
            &[("cookie", "a=1"), ("cookie", "beta=yes")],
            "new",
        ),
        ("GET", "/c", &[("cookie", "beta=no")], "mono"),
        ("GET", "/c", &[("cookie", "xbeta=yes")], "mono"),
        // query
        ("GET", "/q?a=1&v=2", &[], "new"),
        ("GET", "/q?v=22", &[], "mono"),
        ("GET", "/q", &[], "mono"),
    ];
    for (method, path, headers, expected) in cases {
        assert_eq!(
            served(&proxy, "web", method, path, headers).await,
            (200, (*expected).to_owned()),
            "{method} {path} {headers:?}"
        );
    }
    // The AND route: all six conditions hold, then each one fails.
    let all: &[(&str, &str)] = &[shop, ("x-team", "core"), ("cookie", "beta=yes")];
    assert_eq!(
        served(&proxy, "and", "GET", "/api/x?v=2", all).await.1,
        "new"
    );
    assert_eq!(
        served(&proxy, "and", "HEAD", "/api/x?v=2", all).await.1,
        "new"
    );
    let other_host: &[(&str, &str)] = &[
        ("host", "a.example.com"),
        ("x-team", "core"),
        ("cookie", "beta=yes"),
    ];
    let one_fails: &[(&str, &str, Headers)] = &[
        ("POST", "/api/x?v=2", all),
        ("GET", "/other?v=2", all),
        ("GET", "/api/x?v=3", all),
        ("GET", "/api/x?v=2", other_host),
        ("GET", "/api/x?v=2", &[shop, ("cookie", "beta=yes")]),
        ("GET", "/api/x?v=2", &[shop, ("x-team", "core")]),
    ];
    for (method, path, headers) in one_fails {
        assert_eq!(
            served(&proxy, "and", method, path, headers).await,
            (200, "mono".to_owned()),
            "{method} {path} {headers:?}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn rewrites_strip_replace_and_regex_keep_the_query() {
    let users = Backend::start("users").await;
    let proxy = start_proxy(&format!(
        r#"[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
  [[frontend.route]]
  path_prefix = "/api/users"
  rewrite = {{ replace_prefix = {{ from = "/api/users", to = "/users" }} }}
  backend = "users"
  [[frontend.route]]
  path_prefix = "/api"
  rewrite = {{ strip_prefix = "/api" }}
  backend = "users"
  [[frontend.route]]
  path_prefix = "/v1"
  rewrite = {{ regex = "^/v1/(?P<rest>.*)$", to = "/v2/${{rest}}/$1" }}
  backend = "users"
  [[frontend.route]]
  path_prefix = "/up"
  rewrite = {{ regex = "^/up/(.*)$", to = "/$1/../x" }}
  backend = "users"
[[backend]]
name = "users"
  [[backend.server]]
  name = "users"
  address = "{}"
"#,
        users.addr
    ))
    .await;
    let cases = [
        ("/api/users/7?q=1&r=2", "/users/7?q=1&r=2"),
        ("/api/users", "/users"),
        ("/api/orders/1", "/orders/1"),
        ("/api", "/"),
        ("/api?x=1", "/?x=1"),
        ("/v1/a/b?k=v", "/v2/a/b/a/b?k=v"),
        // The result is normalised again: dot segments removed.
        ("/up/a/b", "/a/x"),
    ];
    for (sent, expected) in cases {
        let (status, _, _) = get(&client(), &url(&proxy, "web", sent)).await;
        assert_eq!(status, 200, "{sent}");
        assert_eq!(users.captured().pop().unwrap().target, expected, "{sent}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn redirect_respond_and_deny_are_answered_by_the_proxy() {
    let mono = Backend::start("mono").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("maintenance.html"), "<h1>back soon</h1>\n").unwrap();
    let config = format!(
        r#"[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "mono"
  [[frontend.route]]
  path_prefix = "/old"
  redirect = {{ to = "https://new.example.com/", code = 301, keep_path = true }}
  [[frontend.route]]
  path = "/moved"
  redirect = {{ to = "https://new.example.com/landing" }}
  [[frontend.route]]
  path_prefix = "/reports"
  respond = {{ status = 503, body_file = "maintenance.html" }}
  [[frontend.route]]
  path = "/hello"
  respond = {{ status = 200, body = "hello\n", content_type = "text/plain" }}
  [[frontend.route]]
  path_prefix = "/admin"
  deny = true
[[backend]]
name = "mono"
  [[backend.server]]
  name = "mono"
  address = "{}"
"#,
        mono.addr
    );
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, &config).unwrap();
    let topology = switchyard::config::load(&path).unwrap();
    let proxy = switchyard::app::start(
        topology,
        switchyard::app::StartOptions {
            config_file: None,
            admin_token: Some("t".to_owned()),
            state_dir: dir.path().join("state"),
            threads: switchyard::app::Threads::Caller,
        },
    )
    .await
    .unwrap();
    let c = client();
    let (status, headers, body) = get(&c, &url(&proxy, "web", "/old/a/./b?x=1")).await;
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "https://new.example.com/old/a/b?x=1");
    assert_eq!(body, "");
    let (status, headers, _) = get(&c, &url(&proxy, "web", "/moved")).await;
    assert_eq!(status, 302, "302 by default");
    assert_eq!(headers["location"], "https://new.example.com/landing");
    let (status, headers, body) = get(&c, &url(&proxy, "web", "/reports/q3")).await;
    assert_eq!(status, 503);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(body, "<h1>back soon</h1>\n");
    let (status, headers, body) = get(&c, &url(&proxy, "web", "/hello")).await;
    assert_eq!((status, body.as_str()), (200, "hello\n"));
    assert_eq!(headers["content-type"], "text/plain");
    let (status, _, body) = get(&c, &url(&proxy, "web", "/admin/users")).await;
    assert_eq!((status, body.as_str()), (403, "403 Forbidden\n"));
    assert_eq!(mono.hits(), 0, "no answer reached the backend");
    let (status, _, _) = get(&c, &url(&proxy, "web", "/other")).await;
    assert_eq!(status, 200);
    assert_eq!(mono.hits(), 1);
    let snapshot = proxy.runtime.snapshot();
    let web = snapshot
        .frontend(&switchyard::model::FrontendName::new("web"))
        .unwrap();
    let counted = web.counters.snapshot();
    assert_eq!(counted.requests, 6);
    // 2xx, 3xx, 4xx, 5xx as answered.
    assert_eq!(&counted.responses[1..5], &[2, 2, 1, 1]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn error_page_replaces_the_503_when_every_server_is_in_maint() {
    let mono = Backend::start("mono").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("errors")).unwrap();
    std::fs::write(dir.path().join("errors/503.html"), "<p>maintenance</p>").unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(
        &path,
        format!(
            r#"[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[errors]
503 = "errors/503.html"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "mono"
[[backend]]
name = "mono"
  [[backend.server]]
  name = "mono"
  address = "{}"
  state = "maint"
"#,
            mono.addr
        ),
    )
    .unwrap();
    let proxy = switchyard::app::start(
        switchyard::config::load(&path).unwrap(),
        switchyard::app::StartOptions {
            config_file: None,
            admin_token: Some("t".to_owned()),
            state_dir: dir.path().join("state"),
            threads: switchyard::app::Threads::Caller,
        },
    )
    .await
    .unwrap();
    let (status, headers, body) = get(&client(), &url(&proxy, "web", "/")).await;
    assert_eq!(status, 503);
    assert_eq!(body, "<p>maintenance</p>");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(mono.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_route_timeout_gives_504_on_that_route_only() {
    let slow = Backend::start("slow").await;
    let proxy = start_proxy(&format!(
        r#"[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "slow"
  [[frontend.route]]
  path_prefix = "/quick"
  rewrite = {{ strip_prefix = "/quick" }}
  timeouts = {{ response = "100ms" }}
  backend = "slow"
[[backend]]
name = "slow"
timeouts = {{ response = "10s" }}
  [[backend.server]]
  name = "slow"
  address = "{}"
"#,
        slow.addr
    ))
    .await;
    let c = client();
    let (status, _, _) = get(&c, &url(&proxy, "web", "/quick/slow/400")).await;
    assert_eq!(status, 504, "the route's 100ms");
    let (status, _, body) = get(&c, &url(&proxy, "web", "/slow/400")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "slow slow\n"),
        "the backend's 10s"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_stats_api_lists_each_route_with_conditions_and_actions() {
    let (_mono, _new, proxy) = condition_proxy().await;
    let admin = proxy.admin.unwrap();
    let request = Request::get(format!("http://{admin}/api/stats"))
        .header("authorization", "Bearer test-token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(&client(), request).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let described = |frontend: usize| -> Vec<String> {
        stats["frontends"][frontend]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["description"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        described(0),
        [
            "path=/exact -> new",
            "path_regex=^/v[0-9]+/ -> new",
            "path_prefix=/m methods=DELETE -> new",
            "header x-beta=* header x-canary=1 -> new",
            "cookie beta=yes -> new",
            "query v=2 -> new",
        ]
    );
    assert_eq!(
        described(1),
        [
            "host=shop.example.com path_prefix=/api methods=GET,HEAD header x-team=core \
          cookie beta=yes query v=2 -> new"
        ]
    );
    let route = &stats["frontends"][1]["routes"][0];
    assert_eq!(route["action"], "new");
    assert_eq!(route["backend"], "new");
    proxy.shutdown().await;
}

/// The canary step of the README's walkthrough, with its exact TOML.
#[tokio::test]
async fn readme_canary_step_sends_the_beta_cookie_to_the_new_service() {
    let (monolith, users) = (
        Backend::start("monolith").await,
        Backend::start("users").await,
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
   cookies = {{ beta = "yes" }}
   rewrite = {{ replace_prefix = {{ from = "/api/users", to = "/users" }} }}
   request_headers = {{ set = {{ "X-Canary" = "1" }} }}
   backend = "users"

   [[frontend.route]]
   path_prefix = "/api/users"
   backend = "monolith"
[[backend]]
name = "monolith"
  [[backend.server]]
  name = "monolith"
  address = "{}"
[[backend]]
name = "users"
  [[backend.server]]
  name = "users"
  address = "{}"
"#,
        monolith.addr, users.addr
    ))
    .await;
    let with_cookie = Request::get(url(&proxy, "web", "/api/users/7"))
        .header("cookie", "beta=yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = send(&client(), with_cookie).await;
    assert_eq!((status, served_by(&headers).as_str()), (200, "users"));
    let seen = users.captured().pop().unwrap();
    assert_eq!(seen.target, "/users/7");
    assert_eq!(seen.headers["x-canary"], "1");
    let (status, headers, _) = get(&client(), &url(&proxy, "web", "/api/users/7")).await;
    assert_eq!((status, served_by(&headers).as_str()), (200, "monolith"));
    assert_eq!(monolith.captured().pop().unwrap().target, "/api/users/7");
    proxy.shutdown().await;
}
