//! Hot reload by the file watcher: edits of the config file take effect
//! with no signal (weights, servers, routes, listeners), editor-style saves
//! and delete-then-restore are seen, an invalid file or a busy address
//! changes nothing and is reported through `GET /api/reload/status`, and
//! requests and WebSockets in flight across a reload finish normally. Every
//! test waits on the reload's outcome, never on a sleep.
#![allow(clippy::unwrap_used)]

mod common;
mod reload_support;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::{Backend, get, refused_addr, served_by};
use reload_support::{FileStack, ok_generation};

/// The config the tests edit: frontend `web` (and optionally `extra`) in
/// front of backend `app` (servers by name, address, weight) and `other`.
#[derive(Clone)]
struct Conf {
    web: SocketAddr,
    extra: Option<SocketAddr>,
    servers: Vec<(&'static str, SocketAddr, u32)>,
    route: Option<&'static str>,
    other: SocketAddr,
}

impl Conf {
    fn text(&self) -> String {
        let mut t = format!(
            "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[frontend]]\nname = \"web\"\nlisten = \"{}\"\ndefault_backend = \"app\"\n",
            self.web
        );
        if let Some(prefix) = self.route {
            t += &format!(
                "  [[frontend.route]]\n  path_prefix = \"{prefix}\"\n  backend = \"other\"\n"
            );
        }
        if let Some(extra) = self.extra {
            t += &format!(
                "\n[[frontend]]\nname = \"extra\"\nlisten = \"{extra}\"\ndefault_backend = \"app\"\n"
            );
        }
        t += "\n[[backend]]\nname = \"app\"\n";
        for (name, addr, weight) in &self.servers {
            t += &format!(
                "  [[backend.server]]\n  name = \"{name}\"\n  address = \"{addr}\"\n  weight = {weight}\n"
            );
        }
        t += &format!(
            "\n[[backend]]\nname = \"other\"\n  [[backend.server]]\n  name = \"o\"\n  address = \"{}\"\n",
            self.other
        );
        t
    }
}

struct World {
    a: Backend,
    b: Backend,
    c: Backend,
    other: Backend,
}

impl World {
    async fn start() -> World {
        World {
            a: Backend::start("a").await,
            b: Backend::start("b").await,
            c: Backend::start("c").await,
            other: Backend::start("o").await,
        }
    }

    async fn conf(&self) -> Conf {
        Conf {
            web: refused_addr().await,
            extra: None,
            servers: vec![("a", self.a.addr, 1), ("b", self.b.addr, 1)],
            route: None,
            other: self.other.addr,
        }
    }
}

/// Who served `n` GETs of `url`, sorted and deduplicated.
async fn who(stack: &FileStack, url: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..n {
        let (status, headers, _) = get(&stack.client, url).await;
        assert_eq!(status, 200);
        names.push(served_by(&headers));
    }
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn file_edits_take_effect_with_no_signal() {
    let world = World::start().await;
    let mut conf = world.conf().await;
    let stack = FileStack::start(&conf.text()).await;
    let web = format!("http://{}/", conf.web);
    assert_eq!(who(&stack, &web, 6).await, ["a", "b"]);
    let mut generation = stack.proxy.runtime.snapshot().generation;
    let mut step = |status: serde_json::Value, what: &str| {
        let g = ok_generation(&status);
        assert!(g > generation, "{what}: {status:#}");
        assert_eq!(status["last"]["cause"], "file", "{what}");
        generation = g;
    };

    // A weight change: b takes no new requests.
    conf.servers[1].2 = 0;
    step(stack.edit(&conf.text()).await, "weight");
    assert_eq!(who(&stack, &web, 6).await, ["a"]);

    // A new server.
    conf.servers.push(("c", world.c.addr, 1));
    step(stack.edit(&conf.text()).await, "new server");
    assert_eq!(who(&stack, &web, 6).await, ["a", "c"]);

    // A removed server.
    conf.servers.remove(0);
    step(stack.edit(&conf.text()).await, "removed server");
    assert_eq!(who(&stack, &web, 6).await, ["c"]);
    assert!(stack.proxy.runtime.registry().get("app", "a").is_none());

    // A new route.
    conf.route = Some("/new");
    step(stack.edit(&conf.text()).await, "new route");
    assert_eq!(
        who(&stack, &format!("http://{}/new/x", conf.web), 3).await,
        ["o"]
    );

    // A new listener.
    let extra = refused_addr().await;
    conf.extra = Some(extra);
    step(stack.edit(&conf.text()).await, "new listener");
    assert_eq!(who(&stack, &format!("http://{extra}/"), 3).await, ["c"]);
    assert_eq!(who(&stack, &web, 3).await, ["c"]);
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn an_editor_rename_and_a_delete_then_restore_both_reload() {
    let world = World::start().await;
    let mut conf = world.conf().await;
    let stack = FileStack::start(&conf.text()).await;
    let web = format!("http://{}/", conf.web);

    conf.servers[0].2 = 0;
    let status = stack.save_by_rename(&conf.text()).await;
    ok_generation(&status);
    assert_eq!(who(&stack, &web, 4).await, ["b"]);

    // Deleted, then written again (as `git checkout` or some editors do).
    let before = stack.attempts().await;
    std::fs::remove_file(&stack.file).unwrap();
    conf.servers[0].2 = 1;
    conf.servers[1].2 = 0;
    std::fs::write(&stack.file, conf.text()).unwrap();
    let status = stack.reloaded_after(before).await;
    ok_generation(&status);
    assert_eq!(status["reloads_failed"], 0, "{status:#}");
    assert_eq!(who(&stack, &web, 4).await, ["a"]);
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_reports_its_line() {
    let world = World::start().await;
    let conf = world.conf().await;
    let stack = FileStack::start(&conf.text()).await;
    let web = format!("http://{}/", conf.web);
    let generation = stack.proxy.runtime.snapshot().generation;

    let text = conf.text().replace("weight = 1\n", "weight = 300\n");
    let line = text
        .lines()
        .position(|l| l.contains("weight = 300"))
        .unwrap()
        + 1;
    let status = stack.edit(&text).await;
    assert_eq!(status["last"]["result"], "failed", "{status:#}");
    assert_eq!(status["generation"], generation);
    assert_eq!(status["reloads_failed"], 1);
    let errors = status["last"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{status:#}");
    let first = &errors[0];
    assert_eq!(first["line"], line);
    assert_eq!(first["column"], 12);
    assert_eq!(first["key"], "backend[app].server[a].weight");
    assert_eq!(first["file"], reload_support::path_of(&stack.file));
    assert!(
        first["message"].as_str().unwrap().contains("256"),
        "{first}"
    );
    assert_eq!(stack.proxy.runtime.snapshot().generation, generation);
    assert_eq!(who(&stack, &web, 4).await, ["a", "b"]);

    let (_, metrics) = stack.admin("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("switchyard_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_reloads_total{result=\"ok\"} 0"));
    assert!(metrics.contains("switchyard_last_reload_success_timestamp_seconds "));

    // The stats page shows it until a good reload follows.
    let (_, page) = stack.admin("GET", "/", None).await;
    assert!(page.as_str().unwrap().contains("id=\"reload-failed\""));
    ok_generation(&stack.edit(&conf.text()).await);
    let (_, page) = stack.admin("GET", "/", None).await;
    assert!(!page.as_str().unwrap().contains("id=\"reload-failed\""));
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn an_address_in_use_fails_the_whole_reload_and_old_listeners_serve() {
    let world = World::start().await;
    let mut conf = world.conf().await;
    let stack = FileStack::start(&conf.text()).await;
    let generation = stack.proxy.runtime.snapshot().generation;

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    conf.extra = Some(busy);
    conf.servers[1].2 = 0;
    let status = stack.edit(&conf.text()).await;
    assert_eq!(status["last"]["result"], "failed", "{status:#}");
    let message = status["last"]["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(&busy.to_string()), "{message}");
    assert_eq!(status["generation"], generation);
    // Nothing of the new file applied: b still takes requests.
    assert_eq!(
        who(&stack, &format!("http://{}/", conf.web), 6).await,
        ["a", "b"]
    );
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn a_removed_servers_request_in_flight_completes() {
    let world = World::start().await;
    let mut conf = world.conf().await;
    conf.servers.truncate(1);
    let stack = FileStack::start(&conf.text()).await;
    let url = format!("http://{}/hold", conf.web);
    let c = stack.client.clone();
    let in_flight = tokio::spawn(async move { get(&c, &url).await });
    common::eventually("the request reaches a", || async { world.a.held() == 1 }).await;

    conf.servers = vec![("b", world.b.addr, 1)];
    ok_generation(&stack.edit(&conf.text()).await);
    assert_eq!(
        who(&stack, &format!("http://{}/", conf.web), 3).await,
        ["b"]
    );
    world.a.release();
    let (status, headers, _) = in_flight.await.unwrap();
    assert_eq!((status, served_by(&headers).as_str()), (200, "a"));
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn a_websocket_opened_before_a_reload_keeps_working() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    ws.send(message).await.unwrap();
                }
            });
        }
    });
    let world = World::start().await;
    let mut conf = world.conf().await;
    conf.servers = vec![("ws", echo_addr, 1)];
    let stack = FileStack::start(&conf.text()).await;
    let stream = tokio::net::TcpStream::connect(conf.web).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/chat", conf.web), stream)
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    // The reload replaces the backend's only server and adds a route.
    conf.servers = vec![("a", world.a.addr, 1)];
    conf.route = Some("/new");
    ok_generation(&stack.edit(&conf.text()).await);
    assert_eq!(
        who(&stack, &format!("http://{}/", conf.web), 2).await,
        ["a"]
    );
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("after"));
    ws.close(None).await.unwrap();
    while ws.next().await.is_some_and(|m| m.is_ok()) {}
    drop(ws);
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn a_configmap_style_symlink_swap_reloads() {
    use std::os::unix::fs::symlink;

    let world = World::start().await;
    let mut conf = world.conf().await;
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("config");
    // What the kubelet lays out: the file is a symlink through `..data`,
    // itself a symlink to a timestamped directory.
    std::fs::create_dir_all(mount.join("..2026_01")).unwrap();
    std::fs::write(mount.join("..2026_01/switchyard.toml"), conf.text()).unwrap();
    symlink("..2026_01", mount.join("..data")).unwrap();
    symlink("..data/switchyard.toml", mount.join("switchyard.toml")).unwrap();
    let file = mount.join("switchyard.toml");
    let proxy = common::start_from_file(&file, &dir.path().join("state")).await;
    let c = common::client();
    let status_url = format!("http://{}/api/reload/status", proxy.admin.unwrap());

    // An update: a new timestamped directory, then `..data` swapped by rename.
    conf.servers[1].2 = 0;
    std::fs::create_dir_all(mount.join("..2026_02")).unwrap();
    std::fs::write(mount.join("..2026_02/switchyard.toml"), conf.text()).unwrap();
    symlink("..2026_02", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2026_01")).unwrap();

    common::eventually("the swap is reloaded", || async {
        let (_, status) = reload_support::admin(&c, &status_url, "GET", None).await;
        status["reloads_ok"] == 1
    })
    .await;
    for _ in 0..4 {
        let (status, headers, _) = get(&c, &format!("http://{}/", conf.web)).await;
        assert_eq!((status, served_by(&headers).as_str()), (200, "a"));
    }
    proxy.shutdown().await;
}
