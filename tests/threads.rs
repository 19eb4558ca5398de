//! Worker threads: `[global] threads` (or `run --threads`) sets how many
//! single-threaded runtimes serve client connections, every connection is
//! served whichever worker's socket the kernel gives it to, and shutdown
//! ends the threads. One test in this binary: it counts the process's
//! threads by name, which another test starting a proxy would disturb.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use switchyard::app::{self, StartOptions, Threads};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::Backend;

/// The threads of this process named `switchyard-w*` (the workers).
fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("switchyard-w"))
        .count()
}

/// One request on a connection of its own; the status line and body.
async fn get_on_new_connection(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn start(toml: &str, dir: &Path, threads: Threads) -> app::Running {
    let topology = switchyard::config::parse(toml, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    app::start(
        topology,
        StartOptions {
            config_file: None,
            admin_token: Some("t".to_owned()),
            state_dir: dir.to_path_buf(),
            threads,
        },
    )
    .await
    .expect("proxy starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_workers_serve_every_connection_and_end_at_shutdown() {
    let backend = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[global]
threads = 3
access_log = "off"
state_file = false

[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "app"

[[backend]]
name = "app"
  [[backend.server]]
  name = "a1"
  address = "{}"
"#,
        backend.addr
    );
    assert_eq!(worker_threads(), 0);

    let proxy = start(&toml, dir.path(), Threads::Own(None)).await;
    assert_eq!(
        worker_threads(),
        3,
        "[global] threads = 3 starts three workers"
    );
    let addr = proxy.frontend_addr("web").expect("bound");
    // New connections land on whichever worker's socket the kernel picks;
    // every one is served.
    let answers =
        futures_util::future::join_all((0..48).map(|_| get_on_new_connection(addr))).await;
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("x-served-by: app"), "{answer}");
    }
    assert_eq!(backend.hits(), 48);
    proxy.shutdown().await;
    assert_eq!(worker_threads(), 0, "shutdown ends the worker threads");

    // `run --threads` wins over the file.
    let proxy = start(&toml, dir.path(), Threads::Own(Some(1))).await;
    assert_eq!(worker_threads(), 1);
    let addr = proxy.frontend_addr("web").expect("bound");
    assert!(
        get_on_new_connection(addr)
            .await
            .starts_with("HTTP/1.1 200")
    );
    proxy.shutdown().await;
    assert_eq!(worker_threads(), 0);
}
