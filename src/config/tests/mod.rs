//! Tests of the whole config stage: text in, `Topology` or error lines out.
//! Good files here; bad files, table-driven, in `errors`.

mod errors;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::parse;
use crate::model::*;

/// Parses `source` as "test.toml" and compares the error text (one error per
/// line) with `expected`.
fn check(source: &str, expected: &str) {
    match parse(source, Path::new("test.toml")) {
        Ok(topology) => panic!("expected errors:\n{expected}\ngot {topology:#?}\nfor:\n{source}"),
        Err(errors) => assert_eq!(errors.to_string(), expected, "for:\n{source}"),
    }
}

fn parse_ok(source: &str) -> Topology {
    match parse(source, Path::new("test.toml")) {
        Ok(topology) => topology,
        Err(errors) => panic!("{errors}\nfor:\n{source}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

const MINIMAL: &str = r#"
[[frontend]]
name = "web"
listen = "0.0.0.0:8000"
default_backend = "app"

[[backend]]
name = "app"

  [[backend.server]]
  name = "app-1"
  address = "app:8080"
"#;

#[test]
fn minimal_config_gets_every_default() {
    let s = Duration::from_secs;
    let expected = Topology {
        global: Global {
            grace: s(10),
            access_log: Some(LogFormat::Text),
            state_file: StateFile::InStateDir,
            max_connections: None,
            threads: None,
            watch: true,
            request_id: Some(http::HeaderName::from_static("x-request-id")),
            trusted_proxies: Box::new([]),
            resolvers: Box::new([]),
        },
        admin: Admin {
            listen: addr("127.0.0.1:8001"),
            token_file: None,
            peers: Vec::new(),
            replica: None,
        },
        frontends: vec![Frontend {
            name: FrontendName::new("web"),
            listen: addr("0.0.0.0:8000"),
            routes: vec![],
            default_target: Some(Target::Backend(BackendId(0))),
            forward_headers: true,
            timeouts: FrontendTimeouts {
                client_header: s(10),
                idle: s(60),
                body_idle: s(30),
                write_idle: s(30),
            },
            tls: None,
            redirect_https: false,
            limits: FrontendLimits::DEFAULT,
        }],
        backends: vec![Backend {
            name: BackendName::new("app"),
            balance: BalanceAlgorithm::RoundRobin,
            host: None,
            timeouts: BackendTimeouts {
                connect: s(5),
                response: s(60),
                tunnel: s(3600),
            },
            retries: 2,
            servers: vec![Server {
                name: ServerName::new("app-1"),
                address: ServerAddress {
                    host: "app".into(),
                    port: 8080,
                },
                weight: 1,
                state: AdminState::Ready,
                backup: false,
            }],
            check: None,
            cookie: None,
            passive_fall: Some(3),
            drain_to_maint: false,
            tls: None,
            max_body: 100 * 1024 * 1024,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            discover: None,
        }],
        errors: ErrorPages::default(),
    };
    assert_eq!(parse_ok(MINIMAL), expected);
}

const FULL: &str = r#"
[global]
grace = "30s"
access_log = "off"
state_file = "/var/lib/switchyard/state.json"
threads = 4
max_connections = 500
watch = false
resolvers = ["10.0.0.2:53", "[fd00::2]:5353"]

[admin]
listen = "127.0.0.1:9001"
token_file = "/run/secrets/token"

[[frontend]]
name = "web"
listen = "[::]:8000"
forward_headers = false
timeouts = { client_header = "5s", idle = "1m30s", body_idle = "20s", write_idle = "15s" }

  [[frontend.route]]
  host = "Shop.Example.COM"
  path_prefix = "/api/users/"
  backend = "users"

  [[frontend.route]]
  host = "*.example.com"
  split = { users = 10, monolith = 90, spare = 0 }

  [[frontend.route]]
  path_prefix = "/"
  backend = "monolith"

[[backend]]
name = "monolith"
balance = "leastconn"
host = "old.example.com:8080"
retries = 0
timeouts = { connect = "250ms", response = "2m", tunnel = "10m" }
passive_fall = 0
drain_to_maint = true
cookie = { name = "SERVERID" }
check = { kind = "http", method = "HEAD", path = "/health?full=1", host = "probe", expect = "204", interval = "500ms", timeout = "100ms", rise = 1, fall = 5 }

  [[backend.server]]
  name = "old-1"
  address = "[::1]:8080"
  weight = 256
  state = "drain"

  [[backend.server]]
  name = "old-2"
  address = "10.0.0.5:80"
  weight = 0
  state = "maint"
  backup = true

[[backend]]
name = "users"
check = { kind = "tcp" }
discover = { dns = "users.svc.local:8080", every = "2s", max = 8 }

[[backend]]
name = "spare"
"#;

#[test]
fn full_config_maps_every_key() {
    let t = parse_ok(FULL);
    let ms = Duration::from_millis;
    assert_eq!(
        t.global,
        Global {
            grace: Duration::from_secs(30),
            access_log: None,
            state_file: StateFile::At("/var/lib/switchyard/state.json".into()),
            max_connections: Some(500),
            threads: Some(4),
            watch: false,
            request_id: Some(http::HeaderName::from_static("x-request-id")),
            trusted_proxies: Box::new([]),
            resolvers: Box::new([addr("10.0.0.2:53"), addr("[fd00::2]:5353")]),
        }
    );
    assert_eq!(
        t.admin,
        Admin {
            listen: addr("127.0.0.1:9001"),
            token_file: Some("/run/secrets/token".into()),
            peers: Vec::new(),
            replica: None,
        }
    );
    let web = &t.frontends[0];
    assert_eq!(web.listen, addr("[::]:8000"));
    assert!(!web.forward_headers);
    assert_eq!(web.default_target, None);
    assert_eq!(web.timeouts.idle, ms(90_000));
    assert_eq!(web.timeouts.body_idle, ms(20_000));
    assert_eq!(web.timeouts.write_idle, ms(15_000));
    let routes = &web.routes;
    assert_eq!(
        routes[0].host,
        Some(HostMatch::Exact("shop.example.com".into()))
    );
    assert_eq!(routes[0].path_prefix.as_deref(), Some("/api/users"));
    assert_eq!(routes[0].target, Target::Backend(BackendId(1)));
    assert_eq!(
        routes[1].host,
        Some(HostMatch::Suffix(".example.com".into()))
    );
    assert_eq!(routes[1].path_prefix, None);
    // Split entries come sorted by backend name.
    let split = vec![(BackendId(0), 90), (BackendId(2), 0), (BackendId(1), 10)];
    assert_eq!(routes[1].target, Target::Split(split));
    assert_eq!(routes[2].path_prefix.as_deref(), Some("/"));

    let monolith = &t.backends[0];
    assert_eq!(monolith.balance, BalanceAlgorithm::LeastConn);
    assert_eq!(monolith.host.as_deref(), Some("old.example.com:8080"));
    assert_eq!(monolith.retries, 0);
    assert_eq!(
        monolith.timeouts,
        BackendTimeouts {
            connect: ms(250),
            response: ms(120_000),
            tunnel: ms(600_000),
        }
    );
    assert_eq!(monolith.passive_fall, None);
    assert!(monolith.drain_to_maint);
    assert_eq!(
        monolith.cookie,
        Some(CookieSpec {
            name: "SERVERID".into()
        })
    );
    let http = HttpCheck {
        method: http::Method::HEAD,
        path: "/health?full=1".into(),
        host: Some("probe".into()),
        expect: StatusRange { min: 204, max: 204 },
    };
    assert_eq!(
        monolith.check,
        Some(CheckSpec {
            kind: CheckKind::Http(http),
            interval: ms(500),
            timeout: ms(100),
            rise: 1,
            fall: 5,
        })
    );
    let old_1 = &monolith.servers[0];
    assert_eq!(&*old_1.address.host, "::1");
    assert_eq!(old_1.address.as_socket_addr(), Some(addr("[::1]:8080")));
    assert_eq!(
        (old_1.weight, old_1.state, old_1.backup),
        (256, AdminState::Drain, false)
    );
    let old_2 = &monolith.servers[1];
    assert_eq!(
        (old_2.weight, old_2.state, old_2.backup),
        (0, AdminState::Maint, true)
    );

    let users = &t.backends[1];
    let tcp = users
        .check
        .as_ref()
        .map(|c| (&c.kind, c.interval, c.timeout, c.rise, c.fall));
    assert_eq!(tcp, Some((&CheckKind::Tcp, ms(2000), ms(1000), 2, 3)));
    let discover = users.discover.as_ref().expect("discover");
    assert_eq!(
        (discover.dns.to_string(), discover.every, discover.max),
        ("users.svc.local:8080".to_owned(), ms(2000), 8)
    );
    assert_eq!(&*discover.slot_name(3), "users-3");
    assert!(t.backends[2].servers.is_empty());
    assert_eq!(t.backends[2].discover, None);
}

#[test]
fn discover_defaults() {
    let source = MINIMAL.replace(
        "name = \"app\"\n",
        "name = \"app\"\ndiscover = { dns = \"users:8080\" }\n",
    );
    let discover = parse_ok(&source).backends[0].discover.clone();
    let expected = crate::model::Discover {
        dns: ServerAddress {
            host: "users".into(),
            port: 8080,
        },
        every: Duration::from_secs(5),
        max: 32,
    };
    assert_eq!(discover, Some(expected));
}

#[test]
fn http_check_defaults() {
    let source = MINIMAL.replace(
        "name = \"app\"\n",
        "name = \"app\"\ncheck = { kind = \"http\" }\n",
    );
    let check = parse_ok(&source).backends[0].check.clone();
    let http = HttpCheck {
        method: http::Method::GET,
        path: "/".into(),
        host: None,
        expect: StatusRange { min: 200, max: 399 },
    };
    let expected = CheckSpec {
        kind: CheckKind::Http(http),
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
    };
    assert_eq!(check, Some(expected));
}

#[test]
fn every_example_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("readable config/").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(errors) = super::load(&path) {
                panic!("{errors}");
            }
            count += 1;
        }
    }
    assert!(count > 0, "no example configs in {}", dir.display());
}

#[test]
fn unreadable_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/no-such-file.toml");
    let errors = super::load(&path).expect_err("missing file");
    let text = errors.to_string();
    assert!(
        text.starts_with(&format!("{}: cannot read: ", path.display())),
        "{text}"
    );
}

#[test]
fn wildcard_host_becomes_a_suffix() {
    let source = MINIMAL.replace(
        "default_backend = \"app\"\n",
        "default_backend = \"app\"\n[[frontend.route]]\nhost = \"*.Example.com\"\nbackend = \"app\"\n",
    );
    let host = parse_ok(&source).frontends[0].routes[0].host.clone();
    assert_eq!(host, Some(HostMatch::Suffix(".example.com".into())));
}

#[test]
fn request_id_and_trusted_proxies() {
    let t = parse_ok(&format!(
        "[global]\nrequest_id = {{ header = \"X-Trace-Id\" }}\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.7\"]\n{MINIMAL}"
    ));
    assert_eq!(t.global.request_id.expect("on").as_str(), "x-trace-id");
    let shown: Vec<String> = t
        .global
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32"]);
    let t = parse_ok(&format!("[global]\nrequest_id = false\n{MINIMAL}"));
    assert_eq!(t.global.request_id, None);
    let t = parse_ok(&format!("[global]\nrequest_id = true\n{MINIMAL}"));
    assert_eq!(t.global.request_id.expect("on").as_str(), "x-request-id");
}
