//! Admin states over real sockets: READY, DRAIN and MAINT set at run time or
//! in the config, `weight = 0`, backup servers, `drain_to_maint`, and the
//! sticky cookie that DRAIN honours and MAINT resets.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::pool::{
    COOKIE, all, config, get_with_cookie, server, sticky_pair, sticky_set_cookie, tally,
};
use common::{Backend, client, eventually, get, served_by, start_proxy, url};
use switchyard::model::AdminState;

const STICKY: &str = "cookie = { name = \"SERVERID\" }";

#[tokio::test]
async fn maint_stops_new_requests_to_a_server_from_the_very_next_request() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&config("", &[(&a, ""), (&b, "")])).await;
    let c = client();
    let seen = tally(&proxy, &c, "/", None, 4).await;
    assert_eq!((seen["a"], seen["b"]), (2, 2));

    server(&proxy, "a").set_admin_state(AdminState::Maint);
    let hits_before = a.hits();
    assert_eq!(tally(&proxy, &c, "/", None, 20).await, all("b", 20));
    assert_eq!(a.hits(), hits_before, "nothing reached the MAINT server");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_slow_request_in_flight_to_a_server_put_in_maint_completes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // b starts in MAINT, so the parked request surely lands on a.
    let proxy = start_proxy(&config("", &[(&a, ""), (&b, "state = \"maint\"")])).await;
    let held_url = url(&proxy, "web", "/hold");
    let parked = tokio::spawn(async move { get(&client(), &held_url).await });
    eventually("request parked on a", || async { a.held() == 1 }).await;

    server(&proxy, "b").set_admin_state(AdminState::Ready);
    server(&proxy, "a").set_admin_state(AdminState::Maint);
    assert_eq!(
        tally(&proxy, &client(), "/", None, 6).await,
        all("b", 6),
        "new requests avoid the MAINT server"
    );
    assert_eq!(server(&proxy, "a").counters.snapshot().active, 1);
    a.release();
    let (status, headers, body) = parked.await.unwrap();
    assert_eq!((status, served_by(&headers)), (200, "a".to_owned()));
    assert_eq!(body, "a released\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn drain_keeps_sticky_clients_and_maint_redispatches_them_with_a_new_cookie() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&config(STICKY, &[(&a, ""), (&b, "")])).await;
    let c = client();
    // Two new clients: round robin pins one to each server.
    let (_, first, _) = get(&c, &url(&proxy, "web", "/")).await;
    let (_, second, _) = get(&c, &url(&proxy, "web", "/")).await;
    let (pinned_a, pinned_b) = match served_by(&first).as_str() {
        "a" => (sticky_pair(&first), sticky_pair(&second)),
        _ => (sticky_pair(&second), sticky_pair(&first)),
    };
    assert_ne!(pinned_a, pinned_b);

    let a_state = server(&proxy, "a");
    a_state.set_admin_state(AdminState::Drain);
    assert!(a_state.drain_since().is_some(), "drain start is recorded");
    assert_eq!(
        tally(&proxy, &c, "/", None, 10).await,
        all("b", 10),
        "no new sessions on DRAIN"
    );
    for _ in 0..10 {
        let (status, headers, _) = get_with_cookie(&c, &url(&proxy, "web", "/"), &pinned_a).await;
        assert_eq!((status, served_by(&headers)), (200, "a".to_owned()));
        assert_eq!(
            sticky_set_cookie(&headers),
            None,
            "a kept cookie is not set again"
        );
    }

    a_state.set_admin_state(AdminState::Maint);
    let hits_before = a.hits();
    let (status, headers, _) = get_with_cookie(&c, &url(&proxy, "web", "/"), &pinned_a).await;
    assert_eq!((status, served_by(&headers)), (200, "b".to_owned()));
    let reset = sticky_pair(&headers);
    assert_eq!(
        reset, pinned_b,
        "the cookie now names the server that answered"
    );
    assert_eq!(
        tally(&proxy, &c, "/", Some(&reset), 10).await,
        all("b", 10),
        "the new cookie sticks"
    );
    assert_eq!(a.hits(), hits_before, "MAINT takes no sticky traffic");
    proxy.shutdown().await;
}

#[tokio::test]
async fn ready_after_maint_or_drain_restores_round_robin() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&config("", &[(&a, ""), (&b, "")])).await;
    let c = client();
    let a_state = server(&proxy, "a");
    for out in [AdminState::Maint, AdminState::Drain] {
        a_state.set_admin_state(out);
        assert_eq!(tally(&proxy, &c, "/", None, 6).await, all("b", 6));
        a_state.set_admin_state(AdminState::Ready);
        assert_eq!(a_state.drain_since(), None);
        let mut order = Vec::new();
        for _ in 0..10 {
            let (status, headers, _) = get(&c, &url(&proxy, "web", "/")).await;
            assert_eq!(status, 200);
            order.push(served_by(&headers));
        }
        assert!(
            order.windows(2).all(|w| w[0] != w[1]),
            "strict alternation after READY: {order:?}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_backup_serves_only_while_every_primary_is_out() {
    let (p1, p2, spare) = (
        Backend::start("p1").await,
        Backend::start("p2").await,
        Backend::start("spare").await,
    );
    let proxy = start_proxy(&config(
        "",
        &[(&p1, ""), (&p2, ""), (&spare, "backup = true")],
    ))
    .await;
    let c = client();
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["p1"], seen["p2"], seen.get("spare")), (5, 5, None));

    server(&proxy, "p1").set_admin_state(AdminState::Maint);
    assert_eq!(tally(&proxy, &c, "/", None, 6).await, all("p2", 6));
    server(&proxy, "p2").set_admin_state(AdminState::Drain);
    assert_eq!(tally(&proxy, &c, "/", None, 6).await, all("spare", 6));

    server(&proxy, "p2").set_admin_state(AdminState::Ready);
    assert_eq!(tally(&proxy, &c, "/", None, 6).await, all("p2", 6));
    server(&proxy, "p1").set_admin_state(AdminState::Ready);
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["p1"], seen["p2"], seen.get("spare")), (5, 5, None));
    assert_eq!(spare.hits(), 6);
    proxy.shutdown().await;
}

#[tokio::test]
async fn drain_to_maint_fires_when_the_last_active_request_ends() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let backend = format!("drain_to_maint = true\n{STICKY}");
    let proxy = start_proxy(&config(&backend, &[(&a, ""), (&b, "state = \"maint\"")])).await;
    let c = client();
    let (_, headers, _) = get(&c, &url(&proxy, "web", "/")).await;
    let pinned_a = sticky_pair(&headers);
    let held_url = url(&proxy, "web", "/hold");
    let parked = tokio::spawn(async move { get(&client(), &held_url).await });
    eventually("request parked on a", || async { a.held() == 1 }).await;

    let a_state = server(&proxy, "a");
    server(&proxy, "b").set_admin_state(AdminState::Ready);
    a_state.set_admin_state(AdminState::Drain);
    // A sticky request comes and goes; the parked one is still active.
    let (status, headers, _) = get_with_cookie(&c, &url(&proxy, "web", "/"), &pinned_a).await;
    assert_eq!((status, served_by(&headers)), (200, "a".to_owned()));
    assert_eq!(tally(&proxy, &c, "/", None, 4).await, all("b", 4));
    assert_eq!(a_state.admin_state(), AdminState::Drain);
    assert_eq!(a_state.counters.snapshot().active, 1);

    a.release();
    assert_eq!(parked.await.unwrap().0, 200);
    eventually("a set to MAINT once drained", || async {
        a_state.admin_state() == AdminState::Maint
    })
    .await;
    assert_eq!(a_state.drain_since(), None);
    let (_, headers, _) = get_with_cookie(&c, &url(&proxy, "web", "/"), &pinned_a).await;
    assert_eq!(served_by(&headers), "b");
    proxy.shutdown().await;
}

#[tokio::test]
async fn drain_to_maint_fires_at_once_for_a_server_with_nothing_in_flight() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let text = |a_line: &str| config("drain_to_maint = true", &[(&a, a_line), (&b, "")]);
    let proxy = start_proxy(&text("state = \"drain\"")).await;
    let a_state = server(&proxy, "a");
    eventually("idle DRAIN server from the config set to MAINT", || async {
        a_state.admin_state() == AdminState::Maint
    })
    .await;

    // An idle server put in DRAIN by a reload goes to MAINT too.
    proxy.runtime.replace(parse(&text(""))).await.unwrap();
    assert_eq!(a_state.admin_state(), AdminState::Ready);
    proxy
        .runtime
        .replace(parse(&text("state = \"drain\"")))
        .await
        .unwrap();
    eventually("idle DRAIN server from a reload set to MAINT", || async {
        a_state.admin_state() == AdminState::Maint
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn state_maint_in_the_config_starts_the_server_in_maint() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&config("", &[(&a, "state = \"maint\""), (&b, "")])).await;
    let c = client();
    assert_eq!(server(&proxy, "a").admin_state(), AdminState::Maint);
    assert_eq!(tally(&proxy, &c, "/", None, 10).await, all("b", 10));
    assert_eq!(a.hits(), 0);
    server(&proxy, "a").set_admin_state(AdminState::Ready);
    let seen = tally(&proxy, &c, "/", None, 10).await;
    assert_eq!((seen["a"], seen["b"]), (5, 5));
    proxy.shutdown().await;
}

/// The topology of a config text, for `Runtime::replace` (a reload).
fn parse(text: &str) -> switchyard::model::Topology {
    switchyard::config::parse(text, Path::new("test.toml")).unwrap()
}

#[tokio::test]
async fn drain_or_weight_zero_from_the_config_keeps_sticky_clients_only() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let text = |a_line: &str| config(STICKY, &[(&a, a_line), (&b, "")]);
    let proxy = start_proxy(&text("")).await;
    let c = client();
    let (_, first, _) = get(&c, &url(&proxy, "web", "/")).await;
    let (_, second, _) = get(&c, &url(&proxy, "web", "/")).await;
    let pinned_a = if served_by(&first) == "a" {
        sticky_pair(&first)
    } else {
        sticky_pair(&second)
    };

    for a_line in ["state = \"drain\"", "weight = 0"] {
        proxy.runtime.replace(parse(&text(a_line))).await.unwrap();
        assert_eq!(
            tally(&proxy, &c, "/", None, 10).await,
            all("b", 10),
            "{a_line}: no new sessions"
        );
        assert_eq!(
            tally(&proxy, &c, "/", Some(&pinned_a), 10).await,
            all("a", 10),
            "{a_line}: sticky client kept"
        );
        proxy.runtime.replace(parse(&text(""))).await.unwrap();
        let seen = tally(&proxy, &c, "/", None, 10).await;
        assert_eq!((seen["a"], seen["b"]), (5, 5), "{a_line} undone");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_sticky_cookie_is_opaque_http_only_indirect_and_sticks() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&config(STICKY, &[(&a, ""), (&b, "")])).await;
    let c = client();
    let (status, headers, _) = get(&c, &url(&proxy, "web", "/")).await;
    assert_eq!(status, 200);
    let first = served_by(&headers);
    let set = sticky_set_cookie(&headers).expect("first response sets the cookie");
    let id = set
        .strip_prefix(&format!("{COOKIE}="))
        .and_then(|rest| rest.strip_suffix("; Path=/; HttpOnly"))
        .unwrap_or_else(|| panic!("cookie shape: {set}"));
    assert!(!id.is_empty() && !id.contains(';'), "{set}");
    for backend in [&a, &b] {
        for revealing in [
            backend.addr.ip().to_string(),
            backend.addr.port().to_string(),
        ] {
            assert!(!id.contains(&revealing), "opaque id {id} shows {revealing}");
        }
    }
    assert_eq!(
        headers.get(http::header::CACHE_CONTROL).unwrap(),
        "private",
        "nocache"
    );

    // With the cookie, among the client's own cookies: same server every time.
    let cookies = format!("lang=en; {COOKIE}={id}; theme=dark");
    for _ in 0..10 {
        let (status, headers, _) = get_with_cookie(&c, &url(&proxy, "web", "/"), &cookies).await;
        assert_eq!((status, served_by(&headers)), (200, first.clone()));
        assert_eq!(sticky_set_cookie(&headers), None);
    }
    let pinned = if first == "a" { &a } else { &b };
    let seen = pinned.captured();
    assert_eq!(seen.len(), 11);
    for request in &seen[1..] {
        let cookie: Vec<_> = request
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .collect();
        assert_eq!(
            cookie,
            ["lang=en; theme=dark"],
            "the sticky cookie is not forwarded"
        );
    }
    // Only the sticky cookie: no Cookie header reaches the server.
    let (_, headers, _) =
        get_with_cookie(&c, &url(&proxy, "web", "/"), &format!("{COOKIE}={id}")).await;
    assert_eq!(served_by(&headers), first);
    let last = pinned.captured().pop().unwrap();
    assert!(last.headers.get(http::header::COOKIE).is_none(), "{last:?}");

    // A cookie naming no server is replaced.
    let (status, headers, _) =
        get_with_cookie(&c, &url(&proxy, "web", "/"), &format!("{COOKIE}=bogus")).await;
    assert_eq!(status, 200);
    assert!(sticky_set_cookie(&headers).is_some());
    proxy.shutdown().await;
}

#[tokio::test]
async fn nocache_a_cacheable_response_that_sets_the_sticky_cookie_becomes_private() {
    let a = Backend::start("a").await;
    let proxy = start_proxy(&config(STICKY, &[(&a, "")])).await;
    let c = client();
    let path = "/cache/public,max-age=600,no-transform";
    let (status, headers, _) = get(&c, &url(&proxy, "web", path)).await;
    assert_eq!(status, 200);
    let pair = sticky_pair(&headers);
    let cache: Vec<_> = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(
        cache,
        ["private, no-transform"],
        "public and max-age replaced"
    );
    // A client that already sticks gets the server's own caching rules.
    let (_, headers, _) = get_with_cookie(&c, &url(&proxy, "web", path), &pair).await;
    assert_eq!(sticky_set_cookie(&headers), None);
    let cache: Vec<_> = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(cache, ["public, max-age=600, no-transform"]);
    proxy.shutdown().await;
}
