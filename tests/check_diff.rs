//! `switchyard check -c FILE --diff`: what a reload would change, one line
//! per change in config words, against a second file (`--against`) or the
//! config the running instance serves (its admin API).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

const RUNNING: &str = r#"
[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "web"
listen = "127.0.0.1:8000"
default_backend = "app"
  [[frontend.route]]
  path_prefix = "/api/users"
  backend = "users"
  [[frontend.route]]
  host = "shop.example.com"
  split = { app = 90, users = 10 }
  [[frontend.route]]
  path_prefix = "/old"
  backend = "app"

[[frontend]]
name = "legacy"
listen = "127.0.0.1:8002"
default_backend = "app"

[[backend]]
name = "app"
check = { kind = "http", path = "/health", interval = "2s" }
  [[backend.server]]
  name = "a"
  address = "10.0.0.1:80"
  [[backend.server]]
  name = "b"
  address = "10.0.0.2:80"
  [[backend.server]]
  name = "c"
  address = "10.0.0.3:80"

[[backend]]
name = "users"
check = { kind = "tcp" }
  [[backend.server]]
  name = "u1"
  address = "10.0.1.1:80"

[[backend]]
name = "spare"
"#;

const NEXT: &str = r#"
[global]
resolvers = ["10.0.0.2:53"]

[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "web"
listen = "127.0.0.1:8080"
default_backend = "app"
  [[frontend.route]]
  path_prefix = "/api/users"
  backend = "users"
  [[frontend.route]]
  host = "shop.example.com"
  split = { app = 50, users = 50 }
  [[frontend.route]]
  path_prefix = "/api/orders"
  backend = "orders"

[[frontend]]
name = "admin-ui"
listen = "127.0.0.1:8003"
default_backend = "app"

[[backend]]
name = "app"
check = { kind = "http", path = "/health", interval = "5s" }
  [[backend.server]]
  name = "a"
  address = "10.0.0.1:80"
  weight = 5
  [[backend.server]]
  name = "b"
  address = "10.0.0.2:80"
  state = "maint"
  [[backend.server]]
  name = "d"
  address = "10.0.0.4:80"

[[backend]]
name = "users"
discover = { dns = "users.local:8080", every = "2s" }
  [[backend.server]]
  name = "u1"
  address = "10.0.1.1:80"

[[backend]]
name = "orders"
check = { kind = "tcp" }
  [[backend.server]]
  name = "o1"
  address = "10.0.2.1:80"
"#;

const EXPECTED: &str = "\
~ global: resolvers system -> 10.0.0.2:53
~ frontend web: listen 127.0.0.1:8000 -> 127.0.0.1:8080
~ frontend web route host=shop.example.com: target split app=90 users=10 -> split app=50 users=50
+ frontend web route path_prefix=/api/orders -> backend orders
- frontend web route path_prefix=/old
+ frontend admin-ui listen 127.0.0.1:8003
- frontend legacy listen 127.0.0.1:8002
~ backend app check: interval 2s -> 5s
~ server app/a: weight 1 -> 5
~ server app/b: state ready -> maint
+ server app/d address 10.0.0.4:80 weight 1 state ready
- server app/c
~ backend users: discover none -> dns users.local:8080 every 2s max 32
- backend users check
+ backend orders
+ server orders/o1 address 10.0.2.1:80 weight 1 state ready
+ backend orders check tcp interval 2s timeout 1s rise 2 fall 3
- backend spare
";

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn diff_against_a_file_names_one_change_of_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    let running = write(dir.path(), "running.toml", RUNNING);
    let next = write(dir.path(), "next.toml", NEXT);
    let (code, stdout, stderr) = switchyard(
        &["check", "-c", &next, "--diff", "--against", &running],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, EXPECTED);

    let (code, stdout, _) = switchyard(&["check", "-c", &next, "--diff", "--against", &next], &[]);
    assert_eq!((code, stdout.as_str()), (0, "no changes\n"));
}

#[tokio::test]
async fn diff_against_the_running_instance_reads_its_admin_api() {
    let backend = common::Backend::start("a").await;
    let web = common::refused_addr().await;
    let text = |weight: u32| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"{web}\"\n\
             default_backend = \"app\"\n[[backend]]\nname = \"app\"\n[[backend.server]]\n\
             name = \"a\"\naddress = \"{}\"\nweight = {weight}\n\
             [[backend]]\nname = \"found\"\ndiscover = {{ dns = \"localhost:9\" }}\n",
            backend.addr
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    std::fs::write(&file, text(1)).unwrap();
    let proxy = common::start_from_file(&file, &dir.path().join("state")).await;
    // Servers found in DNS are not in the file: they are no difference.
    assert!(
        proxy
            .runtime
            .registry()
            .get("found", "localhost-1")
            .is_some()
    );
    let next = write(dir.path(), "next.toml", &text(3));
    let admin = format!("http://{}", proxy.admin.unwrap());
    let diff = |token: &'static str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["check", "-c", &next, "--diff", "--admin", &admin])
            .env("SWITCHYARD_ADMIN_TOKEN", token)
            .output()
    };
    let out = diff("test-token").await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "~ server app/a: weight 1 -> 3\n"
    );

    let out = diff("wrong").await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("401"), "{stderr}");
    proxy.shutdown().await;
}
