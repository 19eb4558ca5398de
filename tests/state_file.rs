//! Admin states and weights set at run time survive a restart through the
//! state file, unless the config changed that server's own line since.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, eventually, start_proxy};
use switchyard::model::AdminState;

fn config(state_file: &std::path::Path, a: &Backend, b: &Backend, b_state: &str) -> String {
    format!(
        r#"[global]
access_log = "off"
state_file = "{}"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "app"
[[backend]]
name = "app"
  [[backend.server]]
  name = "a"
  address = "{}"
  [[backend.server]]
  name = "b"
  address = "{}"
  state = "{b_state}"
"#,
        state_file.display(),
        a.addr,
        b.addr
    )
}

#[tokio::test]
async fn operator_states_survive_a_restart_until_the_config_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);

    let proxy = start_proxy(&config(&file, &a, &b, "ready")).await;
    let registry = proxy.runtime.registry().clone();
    registry
        .get("app", "a")
        .unwrap()
        .set_admin_state(AdminState::Maint);
    registry.get("app", "b").unwrap().set_weight(7);
    eventually("state file written", || async {
        std::fs::read_to_string(&file)
            .is_ok_and(|t| t.contains("\"maint\"") && t.contains("\"weight\": 7"))
    })
    .await;
    proxy.shutdown().await;

    // Same config: the operator's values come back.
    let proxy = start_proxy(&config(&file, &a, &b, "ready")).await;
    let registry = proxy.runtime.registry().clone();
    assert_eq!(
        registry.get("app", "a").unwrap().admin_state(),
        AdminState::Maint
    );
    assert_eq!(registry.get("app", "b").unwrap().weight(), 7);
    proxy.shutdown().await;

    // The config changed b's state line: the config wins for b, a keeps MAINT.
    let proxy = start_proxy(&config(&file, &a, &b, "drain")).await;
    let registry = proxy.runtime.registry().clone();
    assert_eq!(
        registry.get("app", "a").unwrap().admin_state(),
        AdminState::Maint
    );
    assert_eq!(
        registry.get("app", "b").unwrap().admin_state(),
        AdminState::Drain
    );
    proxy.shutdown().await;
}
