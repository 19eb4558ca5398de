//! The admin server over real sockets, in front of real backends: stats
//! follow traffic, state/weight/split changes steer it at once, a drain wait
//! ends with the last request, and the security rules hold (401, 403, 421).
#![allow(clippy::unwrap_used)]

mod admin_support;
mod common;

use admin_support::{Stack, TOKEN};
use common::eventually;
use serde_json::{Value, json};

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

async fn set_state(stack: &Stack, server: &str, body: Value) -> Value {
    let path = format!("/api/backends/app/servers/{server}/state");
    let (status, answer) = stack.admin("PUT", &path, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test]
async fn stats_follow_the_requests_that_flow() {
    let stack = Stack::start("").await;
    let served = stack.served("/hello", 4).await;
    assert_eq!(
        (count(&served, "new-stack"), count(&served, "legacy")),
        (2, 2)
    );
    eventually("server counters show the requests", || async {
        let s = stack.server("app", "legacy").await;
        s["counters"]["requests"] == 2 && s["counters"]["active"] == 0
    })
    .await;
    let (status, stats) = stack.admin("GET", "/api/stats", None).await;
    assert_eq!(status, 200);
    let web = &stats["frontends"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["counters"]["requests"], 4);
    let app = &stats["backends"][0];
    assert_eq!(app["totals"]["requests"], 4);
    assert_eq!(app["totals"]["responses"][1], 4, "2xx");
    assert_eq!(app["status"], "UP");
    let legacy = &app["servers"][1];
    assert_eq!(legacy["name"], "legacy");
    assert_eq!(legacy["status"], "no check");
    assert_eq!(legacy["admin_state"], "ready");
    assert!(legacy["counters"]["bytes_out"].as_u64().unwrap() > 0);
    assert!(legacy["seconds_since_last_request"].is_u64());
    assert_eq!(web["routes"][0]["split"][1]["backend"], "other");
}

#[tokio::test]
async fn maint_takes_a_server_out_at_once_and_ready_brings_it_back() {
    let stack = Stack::start("").await;
    let answer = set_state(&stack, "legacy", json!({"state": "maint"})).await;
    assert_eq!(
        (&answer["old"], &answer["state"]),
        (&json!("ready"), &json!("maint"))
    );
    let served = stack.served("/", 6).await;
    assert_eq!(count(&served, "new-stack"), 6, "{served:?}");
    assert_eq!(stack.server("app", "legacy").await["status"], "MAINT");

    set_state(&stack, "legacy", json!({"state": "ready"})).await;
    let served = stack.served("/", 4).await;
    assert_eq!(count(&served, "legacy"), 2, "{served:?}");

    let (_, stats) = stack.admin("GET", "/api/stats", None).await;
    let changes = stats["recent_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["what"], "server app/legacy state");
    assert_eq!(
        (&changes[0]["old"], &changes[0]["new"]),
        (&json!("maint"), &json!("ready"))
    );
    assert_eq!(
        (&changes[0]["who"], &changes[0]["from"]),
        (&json!("token"), &json!("127.0.0.1"))
    );
}

#[tokio::test]
async fn drain_wait_returns_when_the_last_request_ends() {
    let stack = Stack::start("drain_to_maint = true").await;
    // Pin a held request on legacy.
    set_state(&stack, "new-stack", json!({"state": "maint"})).await;
    let client = stack.client.clone();
    let hold_url = common::url(&stack.proxy, "web", "/hold");
    let held = tokio::spawn(async move { common::get(&client, &hold_url).await });
    eventually("legacy holds a request", || async {
        stack.legacy.held() == 1
    })
    .await;
    set_state(&stack, "new-stack", json!({"state": "ready"})).await;

    // A short wait gives up while the request runs.
    let answer = set_state(&stack, "legacy", json!({"state": "drain", "wait": "50ms"})).await;
    assert_eq!(
        (&answer["result"], &answer["drained"]),
        (&json!("timeout"), &json!(false))
    );
    assert_eq!(
        (&answer["state"], &answer["active"]),
        (&json!("drain"), &json!(1))
    );
    let s = stack.server("app", "legacy").await;
    assert_eq!(
        (&s["status"], &s["drain"]["active"]),
        (&json!("DRAIN"), &json!(1))
    );
    // New requests avoid the draining server.
    assert_eq!(count(&stack.served("/", 3).await, "new-stack"), 3);

    let admin_url = stack.admin_url("/api/backends/app/servers/legacy/state");
    let waiter = {
        let client = stack.client.clone();
        tokio::spawn(async move {
            let request = http::Request::put(admin_url)
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .header("x-switchyard-admin", "1")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    json!({"state": "drain", "wait": "10s"}).to_string(),
                )))
                .unwrap();
            common::send(&client, request).await
        })
    };
    // The wait is still blocked by the held request.
    eventually("the drain request is in", || async {
        stack.server("app", "legacy").await["drain"]["active"] == 1
    })
    .await;
    assert!(!waiter.is_finished());
    stack.legacy.release();
    let (status, _, text) = waiter.await.unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (&answer["result"], &answer["drained"]),
        (&json!("drained"), &json!(true))
    );
    assert_eq!(answer["state"], "maint", "drain_to_maint moves it on");
    let (status, _, body) = held.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "legacy released\n"));
}

#[tokio::test]
async fn drain_without_active_requests_goes_to_maint_with_drain_to_maint() {
    let stack = Stack::start("drain_to_maint = true").await;
    let answer = set_state(&stack, "legacy", json!({"state": "drain"})).await;
    assert_eq!(answer["state"], "maint");
}

#[tokio::test]
async fn weight_changes_shift_traffic() {
    let stack = Stack::start("").await;
    let path = "/api/backends/app/servers/new-stack/weight";
    let (status, answer) = stack.admin("PUT", path, Some(json!({"weight": 3}))).await;
    assert_eq!(status, 200, "{answer}");
    let served = stack.served("/", 8).await;
    assert_eq!(
        (count(&served, "new-stack"), count(&served, "legacy")),
        (6, 2),
        "{served:?}"
    );
    let (status, _) = stack.admin("PUT", path, Some(json!({"weight": 257}))).await;
    assert_eq!(status, 400);
    assert_eq!(stack.server("app", "new-stack").await["weight"], 3);
}

#[tokio::test]
async fn split_weights_change_where_a_route_goes() {
    let stack = Stack::start("").await;
    let path = "/api/frontends/web/routes/0/split";
    let (status, answer) = stack
        .admin("PUT", path, Some(json!({"app": 0, "other": 5})))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["split"], "app=0 other=5");
    assert_eq!(count(&stack.served("/split", 4).await, "other-1"), 4);
    for (path, body, expected) in [
        (path, json!({"app": 0, "other": 0}), 400),
        (path, json!({"nope": 1}), 400),
        (path, json!({"app": 300}), 400),
        ("/api/frontends/web/routes/9/split", json!({"app": 1}), 404),
        ("/api/frontends/nope/routes/0/split", json!({"app": 1}), 404),
        ("/api/frontends/web/routes/x/split", json!({"app": 1}), 400),
    ] {
        let (status, answer) = stack.admin("PUT", path, Some(body)).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
}

#[tokio::test]
async fn bad_input_and_unknown_names_answer_json_errors() {
    let stack = Stack::start("").await;
    for (method, path, body, expected) in [
        (
            "PUT",
            "/api/backends/app/servers/nope/state",
            json!({"state": "maint"}),
            404,
        ),
        (
            "PUT",
            "/api/backends/nope/servers/legacy/state",
            json!({"state": "maint"}),
            404,
        ),
        (
            "PUT",
            "/api/backends/app/servers/legacy/state",
            json!({"state": "off"}),
            400,
        ),
        (
            "PUT",
            "/api/backends/app/servers/legacy/state",
            json!({"state": "maint", "wait": "1s"}),
            400,
        ),
        (
            "PUT",
            "/api/backends/app/servers/legacy/state",
            json!({"state": "drain", "wait": "soon"}),
            400,
        ),
        (
            "PUT",
            "/api/backends/app/servers/legacy/state",
            json!({"stat": "maint"}),
            400,
        ),
        (
            "PUT",
            "/api/backends/app/servers/legacy/check",
            json!({"enabled": "yes"}),
            400,
        ),
        ("POST", "/api/reload", json!({}), 409),
    ] {
        let (status, answer) = stack.admin(method, path, Some(body)).await;
        assert_eq!(status, expected, "{path}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, answer) = stack
        .admin("GET", "/api/backends/app/servers/nope", None)
        .await;
    assert_eq!((status, answer["error"].is_string()), (404, true));
    assert_eq!(stack.server("app", "legacy").await["admin_state"], "ready");

    let path = "/api/backends/app/servers/legacy/check";
    let (status, _) = stack
        .admin("PUT", path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stack.server("app", "legacy").await["check_enabled"], false);
}

#[tokio::test]
async fn authentication_is_required_except_for_probes() {
    let stack = Stack::start("").await;
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = stack.raw("GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
    }
    let basic_ok = "Basic b3BzOnRlc3QtdG9rZW4="; // ops:test-token
    let basic_bad = "Basic b3BzOndyb25n"; // ops:wrong
    for (path, auth, expected) in [
        ("/", None, 401),
        ("/api/stats", None, 401),
        ("/metrics", None, 401),
        ("/stats;csv", None, 401),
        ("/api/stats", Some("Bearer wrong"), 401),
        ("/", Some(basic_bad), 401),
        ("/", Some(basic_ok), 200),
        ("/api/stats", Some("Bearer test-token"), 200),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, response_headers, _) = stack.raw("GET", path, &headers, "").await;
        assert_eq!(status, expected, "{path} {auth:?}");
        if status == 401 {
            let challenge = response_headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.starts_with("Basic realm=\"switchyard\""),
                "{challenge}"
            );
        }
    }
    let (_, _, page) = stack
        .raw("GET", "/", &[("authorization", basic_ok)], "")
        .await;
    assert!(page.contains("Set state to MAINT") && page.contains("legacy"));
    let (status, _, _) = stack
        .raw("GET", "/nope", &[("authorization", basic_ok)], "")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn cross_site_requests_and_foreign_hosts_are_refused() {
    let stack = Stack::start("").await;
    let auth = ("authorization", "Basic b3BzOnRlc3QtdG9rZW4=");
    let json_type = ("content-type", "application/json");
    let marker = ("x-switchyard-admin", "1");
    let state = "/api/backends/app/servers/legacy/state";
    let form = "state=maint";
    let body = r#"{"state":"maint"}"#;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u16);
    let cases: Vec<Case> = vec![
        // The classic: a cross-site HTML form posting with cached credentials.
        (
            "/api/reload",
            vec![
                auth,
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "http://evil.example"),
            ],
            form,
            403,
        ),
        (
            state,
            vec![
                auth,
                ("content-type", "application/x-www-form-urlencoded"),
                marker,
            ],
            form,
            403,
        ),
        (
            state,
            vec![auth, json_type, marker, ("origin", "http://evil.example")],
            body,
            403,
        ),
        (
            state,
            vec![auth, json_type, marker, ("sec-fetch-site", "cross-site")],
            body,
            403,
        ),
        (
            state,
            vec![auth, json_type, marker, ("sec-fetch-site", "same-site")],
            body,
            403,
        ),
        (state, vec![auth, json_type], body, 403),
        (
            state,
            vec![auth, json_type, marker, ("host", "evil.example")],
            body,
            421,
        ),
    ];
    for (path, headers, body, expected) in cases {
        let (status, response, _) = stack.raw("PUT", path, &headers, body).await;
        assert_eq!(status, expected, "{headers:?}");
        assert!(response.get("access-control-allow-origin").is_none());
    }
    let (status, _, _) = stack
        .raw("GET", "/", &[auth, ("host", "rebound.example:80")], "")
        .await;
    assert_eq!(status, 421);
    assert_eq!(stack.server("app", "legacy").await["admin_state"], "ready");
    // The same request from the page itself passes.
    let own_origin = format!("http://{}", stack.proxy.admin.unwrap());
    let headers = [
        auth,
        json_type,
        marker,
        ("origin", own_origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let (status, _, text) = stack.raw("PUT", state, &headers, body).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn without_valid_credentials_the_answer_is_401_before_any_csrf_rule() {
    let stack = Stack::start("").await;
    let state = "/api/backends/app/servers/legacy/state";
    let form = ("content-type", "application/x-www-form-urlencoded");
    let evil = ("origin", "http://evil.example");
    for auth in [None, Some("Bearer wrong"), Some("Basic b3BzOndyb25n")] {
        let mut headers = vec![form, evil];
        headers.extend(auth.map(|a| ("authorization", a)));
        let (status, response, _) = stack.raw("PUT", state, &headers, "state=maint").await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(response.contains_key("www-authenticate"), "{auth:?}");
    }
    assert_eq!(stack.server("app", "legacy").await["admin_state"], "ready");
}

#[tokio::test]
async fn a_bearer_token_needs_no_admin_header_unless_a_browser_sends_it() {
    let stack = Stack::start("").await;
    let state = "/api/backends/app/servers/legacy/state";
    let bearer = ("authorization", "Bearer test-token");
    let basic = ("authorization", "Basic b3BzOnRlc3QtdG9rZW4=");
    // As `curl -H "Authorization: Bearer $T" -X PUT -d '{"state":"drain"}'` sends it.
    let curl_form = ("content-type", "application/x-www-form-urlencoded");
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        (vec![bearer, curl_form], 200),
        (vec![bearer], 200),
        (vec![basic, curl_form], 403),
        (vec![basic], 403),
        (vec![bearer, ("origin", "http://evil.example")], 403),
        (vec![bearer, ("sec-fetch-site", "cross-site")], 403),
        (vec![bearer, ("sec-fetch-mode", "cors")], 403),
    ];
    for (headers, expected) in cases {
        let (status, _, text) = stack
            .raw("PUT", state, &headers, r#"{"state":"drain"}"#)
            .await;
        assert_eq!(status, expected, "{headers:?}: {text}");
    }
    assert_eq!(stack.server("app", "legacy").await["admin_state"], "drain");
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_address_with_retry_after() {
    let stack = Stack::start("").await;
    let wrong = [("authorization", "Bearer wrong")];
    for attempt in 0..10 {
        let (status, _, _) = stack.raw("GET", "/api/stats", &wrong, "").await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    // Now even the right token waits until the minute is over.
    let right = [("authorization", "Bearer test-token")];
    let (status, headers, _) = stack.raw("GET", "/api/stats", &right, "").await;
    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let (status, _, _) = stack.raw("GET", "/healthz", &[], "").await;
    assert_eq!(status, 200, "probes are not throttled");
}
