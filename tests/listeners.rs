//! Listeners across reloads: a reload binds every new address before it
//! swaps, so an address that cannot be bound fails the whole reload and the
//! running listeners keep serving; added and removed frontends follow a
//! successful reload.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Backend, client, get, refused_addr, served_by, start_proxy};
use switchyard::runtime::ReloadError;

fn config(backend: &Backend, frontends: &[(&str, String)]) -> String {
    let mut text = String::new();
    for (name, listen) in frontends {
        text.push_str(&format!(
            "[[frontend]]\nname = \"{name}\"\nlisten = \"{listen}\"\ndefault_backend = \"app\"\n\n"
        ));
    }
    text.push_str(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[backend]]\nname = \"app\"\n\n  [[backend.server]]\n  name = \"a\"\n  address = \"{}\"\n",
        backend.addr
    ));
    text
}

fn parse(text: &str) -> switchyard::model::Topology {
    switchyard::config::parse(text, Path::new("test.toml")).unwrap()
}

#[tokio::test]
async fn a_listener_that_cannot_bind_fails_the_whole_reload() {
    let backend = Backend::start("a").await;
    let (one, two) = (refused_addr().await, refused_addr().await);
    let proxy = start_proxy(&config(
        &backend,
        &[("one", one.to_string()), ("two", two.to_string())],
    ))
    .await;
    let generation = proxy.runtime.snapshot().generation;

    // The new config drops "two" and adds "three" on an address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let result = proxy
        .runtime
        .replace(parse(&config(
            &backend,
            &[("one", one.to_string()), ("three", busy.to_string())],
        )))
        .await;
    match result {
        Err(ReloadError::Bind(message)) => {
            assert!(message.contains("frontend three"), "{message}");
            assert!(message.contains(&busy.to_string()), "{message}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert_eq!(proxy.runtime.snapshot().generation, generation);
    assert_eq!(proxy.runtime.bound().len(), 2);

    // Both old listeners still serve: "two" was not removed.
    let c = client();
    for addr in [one, two] {
        let (status, headers, _) = get(&c, &format!("http://{addr}/")).await;
        assert_eq!((status, served_by(&headers).as_str()), (200, "a"));
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_reload_adds_and_removes_listeners() {
    let backend = Backend::start("a").await;
    let (one, two) = (refused_addr().await, refused_addr().await);
    let proxy = start_proxy(&config(&backend, &[("one", one.to_string())])).await;

    let generation = proxy
        .runtime
        .replace(parse(&config(&backend, &[("two", two.to_string())])))
        .await
        .unwrap();
    assert_eq!(proxy.runtime.snapshot().generation, generation);
    let bound = proxy.runtime.bound();
    assert_eq!(bound.len(), 1);
    assert_eq!((&*bound[0].0, bound[0].1), ("two", two));

    let c = client();
    let (status, _, _) = get(&c, &format!("http://{two}/")).await;
    assert_eq!(status, 200);
    common::eventually("the removed listener stops accepting", || async {
        tokio::net::TcpStream::connect(one).await.is_err()
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_open_connection_takes_the_idle_timeout_of_the_snapshot_serving_its_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let backend = Backend::start("a").await;
    let web = refused_addr().await;
    let proxy = start_proxy(&config(&backend, &[("web", web.to_string())])).await;
    // Accepted while `idle` is the default 60 s.
    let mut conn = tokio::net::TcpStream::connect(web).await.unwrap();
    let short = config(&backend, &[("web", web.to_string())]).replace(
        "default_backend = \"app\"\n",
        "default_backend = \"app\"\ntimeouts = { idle = \"200ms\" }\n",
    );
    proxy.runtime.replace(parse(&short)).await.unwrap();

    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The response, then the end of the connection after 200 ms idle (well
    // before the 60 s the connection was accepted with).
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_all)
        .await
        .expect("the proxy closes the idle connection");
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    proxy.shutdown().await;
}
