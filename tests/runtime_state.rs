//! Operator changes survive by default: MAINT, weights and split weights set
//! through the admin API hold across reloads and restarts with no
//! `state_file` configured, until the file changes that line; a split edit
//! racing a reload loses neither; "reset to config" brings the file's values
//! back; the state file stays valid when its writer is killed at any point.
#![allow(clippy::unwrap_used)]

mod common;
mod reload_support;

use std::time::Duration;

use serde_json::json;

use common::{Backend, eventually, refused_addr};
use reload_support::{FileStack, ok_generation};

/// `web` routes `/split` to a split of `app` and `other`; `app` has a, b.
fn config(
    web: std::net::SocketAddr,
    app: &[&Backend],
    other: &Backend,
    split: &str,
    b_weight: u32,
) -> String {
    let mut t = format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"{web}\"\ndefault_backend = \"app\"\n\
         [[frontend.route]]\npath_prefix = \"/split\"\nsplit = {{ {split} }}\n\
         [[backend]]\nname = \"app\"\n"
    );
    for (i, s) in app.iter().enumerate() {
        let weight = if i == 1 { b_weight } else { 1 };
        t += &format!(
            "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\nweight = {weight}\n",
            s.name, s.addr
        );
    }
    t += &format!(
        "[[backend]]\nname = \"other\"\n[[backend.server]]\nname = \"o\"\naddress = \"{}\"\n",
        other.addr
    );
    t
}

async fn server(stack: &FileStack, backend: &str, server: &str) -> serde_json::Value {
    let (code, json) = stack
        .admin(
            "GET",
            &format!("/api/backends/{backend}/servers/{server}"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{json}");
    json
}

async fn split(stack: &FileStack) -> String {
    let (_, stats) = stack.admin("GET", "/api/stats", None).await;
    let route = &stats["frontends"][0]["routes"][0];
    route["split"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}={}", p["backend"].as_str().unwrap(), p["weight"]))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn set_split(stack: &FileStack, weights: serde_json::Value) -> serde_json::Value {
    let (code, json) = stack
        .admin("PUT", "/api/frontends/web/routes/0/split", Some(weights))
        .await;
    assert_eq!(code, 200, "{json}");
    json
}

#[tokio::test]
async fn maint_and_a_split_survive_a_reload_and_a_restart_without_a_state_file() {
    let (a, b, o) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("o").await,
    );
    let web = refused_addr().await;
    let text = config(web, &[&a, &b], &o, "app = 1, other = 1", 1);
    let stack = FileStack::start(&text).await;

    let (code, _) = stack
        .admin(
            "PUT",
            "/api/backends/app/servers/a/state",
            Some(json!({"state": "maint"})),
        )
        .await;
    assert_eq!(code, 200);
    set_split(&stack, json!({"app": 3})).await;
    assert_eq!(split(&stack).await, "app=3 other=1");

    // A reload of a file that changes something else keeps both.
    let text = config(web, &[&a, &b], &o, "app = 1, other = 1", 2);
    ok_generation(&stack.edit(&text).await);
    assert_eq!(server(&stack, "app", "a").await["admin_state"], "maint");
    assert_eq!(server(&stack, "app", "b").await["weight"], 2);
    assert_eq!(split(&stack).await, "app=3 other=1");

    // The stats page marks both with the file's value.
    let (_, page) = stack.admin("GET", "/", None).await;
    let page = page.as_str().unwrap().to_owned();
    assert!(page.contains("(file: READY)"), "server marked");
    assert!(page.contains("(file: app=1 other=1)"), "route marked");

    // A restart with the same state directory keeps both too.
    let state_file = stack.state_dir().join("state.json");
    eventually("the state file holds the split", || async {
        std::fs::read_to_string(&state_file).is_ok_and(|t| t.contains("\"app\": 3"))
    })
    .await;
    let stack = stack.restart().await;
    assert_eq!(server(&stack, "app", "a").await["admin_state"], "maint");
    assert_eq!(split(&stack).await, "app=3 other=1");

    // The file changes that route's split: the file wins.
    let text = config(web, &[&a, &b], &o, "app = 1, other = 4", 2);
    ok_generation(&stack.edit(&text).await);
    assert_eq!(split(&stack).await, "app=1 other=4");
    assert_eq!(server(&stack, "app", "a").await["admin_state"], "maint");

    // Reset to config brings the file's state back.
    let (code, json) = stack
        .admin(
            "POST",
            "/api/reset",
            Some(json!({"backend": "app", "server": "a"})),
        )
        .await;
    assert_eq!(code, 200, "{json}");
    assert_eq!(server(&stack, "app", "a").await["admin_state"], "ready");
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn reset_to_config_undoes_every_operator_change() {
    let (a, b, o) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("o").await,
    );
    let web = refused_addr().await;
    let stack = FileStack::start(&config(web, &[&a, &b], &o, "app = 1, other = 1", 1)).await;
    set_split(&stack, json!({"other": 5})).await;
    let (code, _) = stack
        .admin(
            "PUT",
            "/api/backends/app/servers/b/weight",
            Some(json!({"weight": 9})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, json) = stack.admin("POST", "/api/reset", Some(json!({}))).await;
    assert_eq!(code, 200, "{json}");
    assert_eq!(split(&stack).await, "app=1 other=1");
    assert_eq!(server(&stack, "app", "b").await["weight"], 1);
    let (code, _) = stack
        .admin(
            "POST",
            "/api/reset",
            Some(json!({"frontend": "web", "route": 7})),
        )
        .await;
    assert_eq!(code, 404);
    stack.proxy.shutdown().await;
}

#[tokio::test]
async fn a_split_edit_racing_a_reload_loses_neither() {
    let (a, b, o) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("o").await,
    );
    let web = refused_addr().await;
    let stack = FileStack::start(&config(web, &[&a, &b], &o, "app = 1, other = 1", 1)).await;
    for round in 2..8u32 {
        std::fs::write(
            &stack.file,
            config(web, &[&a, &b], &o, "app = 1, other = 1", round),
        )
        .unwrap();
        let (reload, edit) = tokio::join!(
            stack.admin("POST", "/api/reload", Some(json!({}))),
            set_split(&stack, json!({"app": round})),
        );
        assert_eq!(reload.0, 200, "{}", reload.1);
        assert!(edit["generation"].as_u64().is_some());
        assert_eq!(
            split(&stack).await,
            format!("app={round} other=1"),
            "round {round}"
        );
        assert_eq!(
            server(&stack, "app", "b").await["weight"],
            round,
            "round {round}"
        );
    }
    stack.proxy.shutdown().await;
}

/// Kills a process that rewrites a state file in a loop at pseudo-random
/// moments; the file must parse every time.
#[test]
fn the_state_file_stays_valid_when_its_writer_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let mut seed: u64 = u64::from(std::process::id()) | 1;
    let mut checked = 0;
    for _ in 0..30 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["write-state-forever", "--file", file.to_str().unwrap()])
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(5 + seed % 60);
        // Let the writer run for a moment, then SIGKILL it mid-write.
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the writer exited early"
            );
            std::thread::yield_now();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if file.exists() {
            assert!(
                switchyard::app::persist::is_valid(&file),
                "state file invalid after kill -9: {:?}",
                std::fs::read_to_string(&file)
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} kills found a file to check");
}
