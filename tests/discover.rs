//! `discover`: a backend's servers follow the A records of a name, asked of
//! a real (test) DNS server over UDP through `[global] resolvers`, with
//! backends on 127.0.0.2-4 at one port, as containers of a scaled service.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::dns::{Answer, DnsServer};
use common::{Backend, HttpClient, client, eventually, get, send, served_by, start_proxy, url};
use http::Request;
use http_body_util::Full;
use switchyard::app::Running;

fn config(dns: &DnsServer, port: u16) -> String {
    format!(
        r#"
[global]
access_log = "off"
resolvers = ["{}"]
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "users"
[[backend]]
name = "users"
discover = {{ dns = "users.test:{port}", every = "1s", max = 8 }}
"#,
        dns.addr
    )
}

/// `/api/stats` for the `users` backend.
async fn users(proxy: &Running, c: &HttpClient) -> serde_json::Value {
    let admin = proxy.admin.unwrap();
    let request = Request::get(format!("http://{admin}/api/stats"))
        .header("authorization", "Bearer test-token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(c, request).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "users")
        .cloned()
        .unwrap()
}

/// Each server as `name=address status`, in the backend's order.
async fn servers(proxy: &Running, c: &HttpClient) -> Vec<String> {
    users(proxy, c).await["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}={} {}",
                s["name"].as_str().unwrap(),
                s["address"].as_str().unwrap(),
                s["status"].as_str().unwrap()
            )
        })
        .collect()
}

/// Who served `n` requests.
async fn tally(proxy: &Running, c: &HttpClient, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (status, headers, body) = get(c, &url(proxy, "web", "/")).await;
        assert_eq!(status, 200, "{body}");
        *seen.entry(served_by(&headers)).or_default() += 1;
    }
    seen
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn set_state(proxy: &Running, c: &HttpClient, server: &str, state: &str) {
    let admin = proxy.admin.unwrap();
    let request = Request::put(format!(
        "http://{admin}/api/backends/users/servers/{server}/state"
    ))
    .header("authorization", "Bearer test-token")
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(format!(r#"{{"state":"{state}"}}"#))))
    .unwrap();
    let (status, _, body) = send(c, request).await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until the DNS server has had `n` more questions than `since`: a
/// lookup that began after `since` has then ended.
async fn questions_after(dns: &DnsServer, since: usize, n: usize) {
    eventually(&format!("{n} more DNS questions"), || async {
        dns.questions() >= since + n
    })
    .await;
}

#[tokio::test]
async fn servers_follow_the_records_of_the_name_in_stable_slots() {
    let a = Backend::start_at("a", "127.0.0.2:0".parse().unwrap()).await;
    let port = a.addr.port();
    let b = Backend::start_at("b", format!("127.0.0.3:{port}").parse().unwrap()).await;
    let c3 = Backend::start_at("c", format!("127.0.0.4:{port}").parse().unwrap()).await;
    let dns = DnsServer::start(Answer::Records(vec![])).await;
    dns.set(&["127.0.0.3", "127.0.0.2"]);
    let proxy = start_proxy(&config(&dns, port)).await;
    let c = client();

    // Two records: two servers in address order, both reached.
    assert_eq!(
        users(&proxy, &c).await["discovered_from"],
        format!("users.test:{port}")
    );
    assert_eq!(
        servers(&proxy, &c).await,
        [
            format!("users-1=127.0.0.2:{port} no check"),
            format!("users-2=127.0.0.3:{port} no check"),
        ]
    );
    let seen = tally(&proxy, &c, 4).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["a", "b"])
    );
    let page = Request::get(format!("http://{}/", proxy.admin.unwrap()))
        .header("authorization", "Bearer test-token")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, page) = send(&c, page).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("discovered from users.test:{port}")),
        "{page}"
    );

    // A third record: a third server, with no reload by hand.
    dns.set(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    eventually("users-3 appears", || async {
        servers(&proxy, &c).await.len() == 3
    })
    .await;
    let seen = tally(&proxy, &c, 6).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["a", "b", "c"])
    );

    // MAINT on users-2; a request held on users-1 (and one on users-3).
    set_state(&proxy, &c, "users-2", "maint").await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (c, u) = (c.clone(), url(&proxy, "web", "/hold"));
            tokio::spawn(async move { get(&c, &u).await })
        })
        .collect();
    eventually("a request held on a and one on c", || async {
        a.held() == 1 && c3.held() == 1
    })
    .await;

    // users-1's record goes: its server is gone, the others keep their
    // slots, and MAINT stays on users-2.
    dns.set(&["127.0.0.3", "127.0.0.4"]);
    let expected = [
        format!("users-2=127.0.0.3:{port} MAINT"),
        format!("users-3=127.0.0.4:{port} no check"),
    ];
    eventually("users-1 is gone", || async {
        servers(&proxy, &c).await == expected
    })
    .await;
    assert_eq!(
        tally(&proxy, &c, 4).await,
        BTreeMap::from([("c".to_owned(), 4)])
    );
    // The request in flight on the removed server completes.
    a.release();
    c3.release();
    for h in held {
        let (status, _, body) = h.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }

    // A timeout, NXDOMAIN and an empty answer each keep the set.
    for answer in [Answer::Silent, Answer::NxDomain, Answer::Records(vec![])] {
        dns.answer(answer.clone());
        // Three more questions: a lookup that began after the change has ended.
        questions_after(&dns, dns.questions(), 3).await;
        assert_eq!(servers(&proxy, &c).await, expected, "{answer:?}");
        assert_eq!(
            tally(&proxy, &c, 2).await,
            BTreeMap::from([("c".to_owned(), 2)])
        );
    }

    // The name answers again: the freed slot 1 is the lowest free one.
    dns.set(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    eventually("users-1 is back", || async {
        servers(&proxy, &c).await.len() == 3
    })
    .await;
    assert_eq!(
        servers(&proxy, &c).await,
        [
            format!("users-1=127.0.0.2:{port} no check"),
            format!("users-2=127.0.0.3:{port} MAINT"),
            format!("users-3=127.0.0.4:{port} no check"),
        ]
    );
    drop(b);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_lookup_that_changes_nothing_does_not_rebuild() {
    let a = Backend::start_at("a", "127.0.0.2:0".parse().unwrap()).await;
    let dns = DnsServer::start(Answer::Records(vec![])).await;
    dns.set(&["127.0.0.2"]);
    let proxy = start_proxy(&config(&dns, a.addr.port())).await;
    let generation = proxy.runtime.snapshot().generation;
    // Two more lookups with the same answer.
    questions_after(&dns, dns.questions(), 4).await;
    assert_eq!(proxy.runtime.snapshot().generation, generation);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_reload_and_a_lookup_never_undo_each_other() {
    let a = Backend::start_at("a", "127.0.0.2:0".parse().unwrap()).await;
    let port = a.addr.port();
    let _b = Backend::start_at("b", format!("127.0.0.3:{port}").parse().unwrap()).await;
    let old = Backend::start("old").await;
    let dns = DnsServer::start(Answer::Records(vec![])).await;
    dns.set(&["127.0.0.2"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    let text = config(&dns, port).replace("[global]", "[global]\nwatch = false");
    std::fs::write(&file, &text).unwrap();
    let proxy = common::start_from_file(&file, &dir.path().join("state")).await;
    let c = client();
    assert_eq!(
        servers(&proxy, &c).await,
        [format!("users-1=127.0.0.2:{port} no check")]
    );

    // The file adds a static server: the discovered one stays.
    let with_static = format!(
        "{text}[[backend.server]]\nname = \"old\"\naddress = \"{}\"\n",
        old.addr
    );
    std::fs::write(&file, &with_static).unwrap();
    proxy
        .runtime
        .reload(switchyard::runtime::ReloadCause::Api)
        .await
        .unwrap();
    let both = [
        format!("old={} no check", old.addr),
        format!("users-1=127.0.0.2:{port} no check"),
    ];
    assert_eq!(servers(&proxy, &c).await, both);

    // A lookup adds a server: the file's static one stays.
    dns.set(&["127.0.0.2", "127.0.0.3"]);
    eventually("users-2 appears", || async {
        servers(&proxy, &c).await.len() == 3
    })
    .await;
    assert_eq!(
        servers(&proxy, &c).await[..2],
        both,
        "the static server and slot 1 stay"
    );
    let seen = tally(&proxy, &c, 6).await;
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        names(&["a", "b", "old"])
    );

    // The file stops discovering: the discovered servers go, the static one stays.
    std::fs::write(&file, with_static.replace("discover = {", "# discover = {")).unwrap();
    proxy
        .runtime
        .reload(switchyard::runtime::ReloadCause::Api)
        .await
        .unwrap();
    assert_eq!(
        servers(&proxy, &c).await,
        [format!("old={} no check", old.addr)]
    );
    assert!(users(&proxy, &c).await["discovered_from"].is_null());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_maint_on_a_slot_survives_a_restart_and_a_silent_name_server_is_passed_over() {
    let a = Backend::start_at("a", "127.0.0.2:0".parse().unwrap()).await;
    let port = a.addr.port();
    let _b = Backend::start_at("b", format!("127.0.0.3:{port}").parse().unwrap()).await;
    let dns = DnsServer::start(Answer::Records(vec![])).await;
    dns.set(&["127.0.0.2", "127.0.0.3"]);
    // A name server that never answers: after 1s the next one is asked.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    let state = dir.path().join("state");
    let text = config(&dns, port).replace(
        &format!("resolvers = [\"{}\"]", dns.addr),
        &format!("resolvers = [\"{silent_addr}\", \"{}\"]", dns.addr),
    );
    std::fs::write(&file, text).unwrap();
    let proxy = common::start_from_file(&file, &state).await;
    let c = client();
    set_state(&proxy, &c, "users-2", "maint").await;
    eventually("the state file holds the MAINT", || async {
        std::fs::read_to_string(state.join("state.json"))
            .is_ok_and(|s| s.contains("users-2") && s.contains("maint"))
    })
    .await;
    proxy.shutdown().await;

    // Started again, the first lookup finds the slots before the state file
    // is read: users-2 is in MAINT from the first request on.
    let proxy = common::start_from_file(&file, &state).await;
    assert_eq!(
        servers(&proxy, &c).await,
        [
            format!("users-1=127.0.0.2:{port} no check"),
            format!("users-2=127.0.0.3:{port} MAINT"),
        ]
    );
    assert_eq!(
        tally(&proxy, &c, 3).await,
        BTreeMap::from([("a".to_owned(), 3)])
    );
    proxy.shutdown().await;
}
