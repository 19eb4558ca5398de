//! Health end to end through the proxy, over real sockets: active checks
//! take a failing server out and bring it back, passive health and retries
//! hide a killed server from clients, DOWN sticky clients are redispatched,
//! and a backend with no server left answers 503 at once.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::pool::{all, config, get_with_cookie, server, sticky_pair, tally};
use common::{Backend, client, eventually, get, served_by, start_proxy, url};
use switchyard::model::AdminState;
use switchyard::state::{CheckOutcome, Health};

/// Checks every 50 ms: DOWN after 3 failures, UP after 2 successes.
const CHECK: &str = "check = { kind = \"http\", path = \"/health\", interval = \"50ms\", \
                     timeout = \"200ms\", rise = 2, fall = 3 }";

/// `/health` checks `backend` received.
fn checks_seen(backend: &Backend) -> usize {
    backend
        .captured()
        .iter()
        .filter(|r| r.target == "/health")
        .count()
}

/// Requests other than checks that `backend` received.
fn requests_seen(backend: &Backend) -> usize {
    backend
        .captured()
        .iter()
        .filter(|r| r.target != "/health")
        .count()
}

#[tokio::test]
async fn a_server_answering_500_goes_down_after_fall_checks_and_up_after_rise() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&config(CHECK, &[(&a, ""), (&b, "")])).await;
    let a_state = server(&proxy, "a");
    eventually("a checked", || async {
        a_state.check_status().last == Some(CheckOutcome::Passed { status: Some(200) })
    })
    .await;
    let c = client();
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["a"], seen["b"]), (5, 5));

    let checks_before = checks_seen(&a);
    a.set_status(Some(500));
    eventually("a marked DOWN", || async {
        a_state.health() == Health::Down
    })
    .await;
    let status = a_state.check_status();
    assert_eq!(status.last, Some(CheckOutcome::BadStatus { status: 500 }));
    assert!(status.consecutive_fail >= 3, "{status:?}");
    assert!(checks_seen(&a) >= checks_before + 3, "fall = 3 checks");
    assert_eq!(a_state.transitions_down(), 1);
    assert_eq!(tally(&proxy, &c, "/", None, 10).await, all("b", 10));

    a.set_status(None);
    eventually("a marked UP", || async { a_state.health() == Health::Up }).await;
    assert!(a_state.check_status().consecutive_ok >= 2);
    assert_eq!(a_state.transitions_down(), 1);
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["a"], seen["b"]), (5, 5), "traffic is back");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_killed_server_leaves_rotation_without_a_client_error() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let backend = format!("retries = 2\npassive_fall = 3\n{CHECK}");
    let proxy = start_proxy(&config(&backend, &[(&a, ""), (&b, "")])).await;
    let a_state = server(&proxy, "a");
    let c = client();
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["a"], seen["b"]), (5, 5));

    a.kill().await;
    // Once the proxy has seen a's pooled connections close, connect
    // failures on a are retried on b; then a is DOWN and not tried.
    let snapshot = proxy.runtime.snapshot();
    let a_pool = snapshot.backends[0]
        .servers
        .iter()
        .find(|s| &*s.state.server == "a")
        .and_then(|s| s.pool.clone())
        .unwrap();
    eventually("the proxy saw a's connections close", || async {
        a_pool.open_idle() == 0
    })
    .await;
    assert_eq!(tally(&proxy, &c, "/", None, 20).await, all("b", 20));
    eventually("a marked DOWN", || async {
        a_state.health() == Health::Down
    })
    .await;
    let errors = a_state.counters.snapshot().connection_errors;
    assert_eq!(tally(&proxy, &c, "/", None, 20).await, all("b", 20));
    assert_eq!(
        a_state.counters.snapshot().connection_errors,
        errors,
        "a DOWN server is not tried"
    );

    let a = Backend::start_at("a", a.addr).await;
    eventually("a back UP", || async { a_state.health() == Health::Up }).await;
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["a"], seen["b"]), (5, 5), "a is back in rotation");
    assert_eq!(requests_seen(&a), 5);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_sticky_client_of_a_down_server_is_redispatched_with_a_new_cookie() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let backend = format!("cookie = {{ name = \"SERVERID\" }}\n{CHECK}");
    let proxy = start_proxy(&config(&backend, &[(&a, ""), (&b, "state = \"maint\"")])).await;
    let c = client();
    let (_, headers, _) = get(&c, &url(&proxy, "web", "/")).await;
    let pinned_a = sticky_pair(&headers);
    server(&proxy, "b").set_admin_state(AdminState::Ready);

    a.set_status(Some(500));
    let a_state = server(&proxy, "a");
    eventually("a marked DOWN", || async {
        a_state.health() == Health::Down
    })
    .await;
    let (status, headers, _) = get_with_cookie(&c, &url(&proxy, "web", "/"), &pinned_a).await;
    assert_eq!((status, served_by(&headers)), (200, "b".to_owned()));
    let pinned_b = sticky_pair(&headers);
    assert_ne!(pinned_b, pinned_a, "the cookie is reset");
    assert_eq!(
        tally(&proxy, &c, "/", Some(&pinned_b), 5).await,
        all("b", 5)
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_backup_takes_over_while_the_primaries_are_down() {
    let (p1, p2, spare) = (
        Backend::start("p1").await,
        Backend::start("p2").await,
        Backend::start("spare").await,
    );
    let servers = [(&p1, ""), (&p2, ""), (&spare, "backup = true")];
    let proxy = start_proxy(&config(CHECK, &servers)).await;
    let c = client();
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["p1"], seen["p2"], seen.get("spare")), (5, 5, None));

    p1.set_status(Some(500));
    p2.set_status(Some(500));
    for name in ["p1", "p2"] {
        let state = server(&proxy, name);
        eventually("primary DOWN", || async { state.health() == Health::Down }).await;
    }
    assert_eq!(tally(&proxy, &c, "/", None, 10).await, all("spare", 10));

    p2.set_status(None);
    let p2_state = server(&proxy, "p2");
    eventually("p2 UP", || async { p2_state.health() == Health::Up }).await;
    assert_eq!(tally(&proxy, &c, "/", None, 6).await, all("p2", 6));
    proxy.shutdown().await;
}

/// Answers one request; returns status, `Retry-After` and the time taken.
async fn timed_get(proxy: &switchyard::app::Running) -> (u16, Option<String>, Duration) {
    let c = client();
    let started = Instant::now();
    let (status, headers, _) = get(&c, &url(proxy, "web", "/")).await;
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, started.elapsed())
}

#[tokio::test]
async fn with_every_server_down_or_in_maint_the_answer_is_a_fast_503() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let backend = format!("timeouts = {{ connect = \"5s\" }}\n{CHECK}");
    let proxy = start_proxy(&config(&backend, &[(&a, ""), (&b, "")])).await;
    a.set_status(Some(500));
    b.set_status(Some(500));
    for name in ["a", "b"] {
        let state = server(&proxy, name);
        eventually("server DOWN", || async { state.health() == Health::Down }).await;
    }
    let served = requests_seen(&a) + requests_seen(&b);
    for _ in 0..5 {
        let (status, retry_after, took) = timed_get(&proxy).await;
        assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
        assert!(took < Duration::from_millis(100), "503 took {took:?}");
    }
    let served_now = requests_seen(&a) + requests_seen(&b);
    assert_eq!(served_now, served, "no request reached a DOWN server");

    // One DOWN, the other in MAINT: the same.
    b.set_status(None);
    let b_state = server(&proxy, "b");
    eventually("b UP", || async { b_state.health() == Health::Up }).await;
    b_state.set_admin_state(AdminState::Maint);
    let (status, retry_after, took) = timed_get(&proxy).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert!(took < Duration::from_millis(100), "503 took {took:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn leaving_maint_waits_for_a_check_before_traffic_returns() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&config(CHECK, &[(&a, ""), (&b, "")])).await;
    let a_state = server(&proxy, "a");
    eventually("a checked", || async {
        a_state.check_status().last == Some(CheckOutcome::Passed { status: Some(200) })
    })
    .await;
    // Maintenance leaves a broken; it was UP when checks stopped.
    a_state.set_admin_state(AdminState::Maint);
    a.set_status(Some(500));
    a_state.set_admin_state(AdminState::Ready);
    let c = client();
    assert_eq!(
        tally(&proxy, &c, "/", None, 10).await,
        all("b", 10),
        "no traffic before a check"
    );
    eventually("a marked DOWN", || async {
        a_state.health() == Health::Down
    })
    .await;
    assert_eq!(tally(&proxy, &c, "/", None, 10).await, all("b", 10));

    // Fixed during a second maintenance: back once a check passes.
    a_state.set_admin_state(AdminState::Maint);
    a.set_status(None);
    a_state.set_admin_state(AdminState::Ready);
    eventually("a UP", || async { a_state.health() == Health::Up }).await;
    eventually("a takes traffic again", || async {
        tally(&proxy, &c, "/", None, 2).await.get("a") == Some(&1)
    })
    .await;
    proxy.shutdown().await;
}
