//! Balancing over real sockets: weighted round robin, least connections and
//! weighted route splits.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, client, eventually, get, served_by, start_proxy, url};

async fn tally(
    proxy: &switchyard::app::Running,
    path: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let c = client();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (status, headers, _) = get(&c, &url(proxy, "web", path)).await;
        assert_eq!(status, 200);
        *seen.entry(served_by(&headers)).or_default() += 1;
    }
    seen
}

fn servers(backends: &[(&Backend, u32)]) -> String {
    backends
        .iter()
        .map(|(b, w)| {
            format!(
                "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\nweight = {w}\n",
                b.name, b.addr
            )
        })
        .collect()
}

#[tokio::test]
async fn round_robin_alternates_between_two_servers() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\n{}",
        servers(&[(&a, 1), (&b, 1)])
    ))
    .await;
    let seen = tally(&proxy, "/", 100).await;
    assert_eq!(seen.get("a"), Some(&50));
    assert_eq!(seen.get("b"), Some(&50));
    proxy.shutdown().await;
}

#[tokio::test]
async fn weighted_round_robin_gives_exact_proportions_over_three_servers() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let proxy = start_proxy(&format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\n{}",
        servers(&[(&a, 1), (&b, 2), (&c, 3)])
    ))
    .await;
    let seen = tally(&proxy, "/", 600).await;
    assert_eq!((seen["a"], seen["b"], seen["c"]), (100, 200, 300));
    proxy.shutdown().await;
}

#[tokio::test]
async fn least_connections_avoids_the_busy_server() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = start_proxy(&format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\nbalance = \"leastconn\"\n{}",
        servers(&[(&a, 1), (&b, 1)])
    ))
    .await;
    // Park two requests; leastconn spreads them, one on each server.
    let held_url = url(&proxy, "web", "/hold");
    let mut parked = Vec::new();
    for _ in 0..2 {
        let u = held_url.clone();
        parked.push(tokio::spawn(async move { get(&client(), &u).await }));
        let want = parked.len();
        eventually("request parked", || async { a.held() + b.held() == want }).await;
    }
    assert_eq!((a.held(), b.held()), (1, 1));
    // Park a third one more on a: now every new request must go to b.
    let third = {
        let u = held_url.clone();
        tokio::spawn(async move { get(&client(), &u).await })
    };
    eventually("third request parked", || async {
        a.held() + b.held() == 3
    })
    .await;
    let busy = if a.held() == 2 { "a" } else { "b" };
    let idle = if busy == "a" { "b" } else { "a" };
    let seen = tally(&proxy, "/", 10).await;
    assert_eq!(
        seen.get(idle),
        Some(&10),
        "all to the less busy server: {seen:?}"
    );
    a.release();
    b.release();
    for p in parked {
        assert_eq!(p.await.unwrap().0, 200);
    }
    assert_eq!(third.await.unwrap().0, 200);
    proxy.shutdown().await;
}

#[tokio::test]
async fn weighted_route_split_shifts_traffic_between_backends() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
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
  path_prefix = "/shop"
  split = {{ monolith = 90, shop = 10 }}
[[backend]]
name = "monolith"
  [[backend.server]]
  name = "old"
  address = "{}"
[[backend]]
name = "shop"
  [[backend.server]]
  name = "new"
  address = "{}"
"#,
        old.addr, new.addr
    ))
    .await;
    let seen = tally(&proxy, "/shop/cart", 1000).await;
    let new_share = seen.get("new").copied().unwrap_or(0);
    assert!(
        (80..=120).contains(&new_share),
        "about 10% to the new service: {seen:?}"
    );
    let seen = tally(&proxy, "/other", 20).await;
    assert_eq!(
        seen.get("old"),
        Some(&20),
        "unsplit paths stay on the monolith"
    );
    proxy.shutdown().await;
}
