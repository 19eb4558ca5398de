//! Replicas sharing their operator state, three in one process, each with
//! its own state directory and admin server on 127.0.0.1:0: they start
//! alone, learn each other's admin addresses by a reload of their config
//! (each lists all three, itself included, as a DNS name of a scaled service
//! would), and then a MAINT clicked on one reaches the others within a
//! second, a restarted replica pulls the current state before it reports
//! ready, and conflicting changes end in the same state everywhere.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, HttpClient, client, eventually, get, send, served_by, start_from_file, url};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use switchyard::app::Running;
use switchyard::model::AdminState;
use switchyard::runtime::ReloadCause;
use tokio::time::Instant;

/// The test secret (`tests/common` passes it to every replica).
const TOKEN: &str = "test-token";

struct Replica {
    name: String,
    config: PathBuf,
    state_dir: PathBuf,
    admin: SocketAddr,
    running: Option<Running>,
}

impl Replica {
    fn running(&self) -> &Running {
        self.running.as_ref().expect("replica running")
    }

    fn admin_state(&self, server: &str) -> AdminState {
        let state = self.running().runtime.registry().get("app", server);
        state.expect("server known").admin_state()
    }

    fn weight(&self, server: &str) -> u32 {
        let state = self.running().runtime.registry().get("app", server);
        state.expect("server known").weight()
    }
}

/// Three replicas in front of backend `app` (servers `a` and `b`).
struct Cluster {
    _dir: tempfile::TempDir,
    token_file: PathBuf,
    a: Backend,
    b: Backend,
    replicas: Vec<Replica>,
    client: HttpClient,
}

impl Cluster {
    /// Starts three replicas alone, then tells each its peers by a reload
    /// and waits until every one is in sync with the two others.
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("admin-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let mut cluster = Cluster {
            token_file,
            a,
            b,
            replicas: Vec::new(),
            client: client(),
            _dir: dir,
        };
        for i in 1..=3 {
            let name = format!("r{i}");
            let config = cluster._dir.path().join(format!("{name}.toml"));
            let state_dir = cluster._dir.path().join(&name);
            std::fs::write(&config, cluster.config(&name, "127.0.0.1:0", &[])).unwrap();
            let running = start_from_file(&config, &state_dir).await;
            cluster.replicas.push(Replica {
                name,
                config,
                state_dir,
                admin: running.admin.expect("admin bound"),
                running: Some(running),
            });
        }
        let peers: Vec<SocketAddr> = cluster.replicas.iter().map(|r| r.admin).collect();
        for r in &cluster.replicas {
            std::fs::write(&r.config, cluster.config(&r.name, "127.0.0.1:0", &peers)).unwrap();
            r.running().runtime.reload(ReloadCause::Api).await.unwrap();
        }
        for i in 0..3 {
            cluster.wait_in_sync(i).await;
        }
        cluster
    }

    fn config(&self, name: &str, admin: &str, peers: &[SocketAddr]) -> String {
        let peers = match peers {
            [] => String::new(),
            list => {
                let quoted: Vec<String> = list.iter().map(|p| format!("\"{p}\"")).collect();
                format!("peers = [{}]\n", quoted.join(", "))
            }
        };
        format!(
            "[global]\naccess_log = \"off\"\nwatch = false\n\
             [admin]\nlisten = \"{admin}\"\nreplica = \"{name}\"\ntoken_file = \"{}\"\n{peers}\
             [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
             [[frontend.route]]\npath_prefix = \"/split\"\nsplit = {{ app = 90, spare = 10 }}\n\
             [[backend]]\nname = \"app\"\n\
             [[backend.server]]\nname = \"a\"\naddress = \"{}\"\n\
             [[backend.server]]\nname = \"b\"\naddress = \"{}\"\n\
             [[backend]]\nname = \"spare\"\n\
             [[backend.server]]\nname = \"s\"\naddress = \"{}\"\n",
            self.token_file.display(),
            self.a.addr,
            self.b.addr,
            self.b.addr
        )
    }

    /// Waits until replica `i` has exchanged with both others and holds
    /// the same registers as each.
    async fn wait_in_sync(&self, i: usize) {
        let what = format!("{} in sync with two peers", self.replicas[i].name);
        eventually(&what, || async {
            let stats = self.admin(i, "GET", "/api/stats", None).await.1;
            let peers = stats["peers"]["peers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            peers.len() == 2 && peers.iter().all(|p| p["in_sync"] == true)
        })
        .await;
    }

    /// A request to replica `i`'s admin server; returns status and JSON.
    async fn admin(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.replicas[i].admin))
            .header("authorization", format!("Bearer {TOKEN}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(String::new, |b| b.to_string());
        let (status, _, text) = send(
            &self.client,
            request.body(Full::new(Bytes::from(body))).unwrap(),
        )
        .await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn set_state(&self, i: usize, server: &str, state: &str) {
        let path = format!("/api/backends/app/servers/{server}/state");
        let (status, answer) = self
            .admin(i, "PUT", &path, Some(json!({ "state": state })))
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    /// Who served `n` requests through replica `i`.
    async fn served(&self, i: usize, n: usize) -> Vec<String> {
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            let (status, headers, _) =
                get(&self.client, &url(self.replicas[i].running(), "web", "/")).await;
            assert_eq!(status, 200);
            names.push(served_by(&headers));
        }
        names
    }

    async fn shutdown(mut self) {
        for r in &mut self.replicas {
            if let Some(running) = r.running.take() {
                running.shutdown().await;
            }
        }
    }
}

#[tokio::test]
async fn maint_on_one_replica_stops_traffic_through_all_three_within_a_second() {
    let cluster = Cluster::start().await;
    let started = Instant::now();
    cluster.set_state(0, "a", "maint").await;
    let deadline = started + Duration::from_secs(1);
    for (i, r) in cluster.replicas.iter().enumerate() {
        while r.admin_state("a") != AdminState::Maint {
            assert!(
                Instant::now() < deadline,
                "{} still sends to a after 1 s",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let served = cluster.served(i, 4).await;
        assert!(served.iter().all(|s| s == "b"), "{}: {served:?}", r.name);
    }
    // The audit log names the replica where the change was made.
    let stats = cluster.admin(1, "GET", "/api/stats", None).await.1;
    let change = &stats["recent_changes"][0];
    assert_eq!(change["what"], "server app/a state");
    assert_eq!(
        (&change["replica"], &change["from_peer"]),
        (&json!("r1"), &json!(true))
    );
    let stats = cluster.admin(0, "GET", "/api/stats", None).await.1;
    let change = &stats["recent_changes"][0];
    assert_eq!(
        (&change["replica"], &change["from_peer"]),
        (&json!("r1"), &json!(false))
    );
    assert_eq!(stats["peers"]["replica"], "r1");
    // The stats page shows the peers.
    let (status, page) = cluster.admin(0, "GET", "/", None).await;
    assert_eq!(status, 200);
    let page = page.as_str().unwrap_or_default().to_owned();
    assert!(page.contains("<h2>Peers</h2>"), "{page}");
    assert!(
        page.contains(&cluster.replicas[1].admin.to_string()),
        "peer r2 listed"
    );
    // Prometheus: each peer up and in sync.
    let r2 = cluster.replicas[1].admin;
    eventually("r1's metrics show r2 in sync", || async {
        let metrics = cluster.admin(0, "GET", "/metrics", None).await.1;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        text.contains(&format!(
            "switchyard_peer_up{{peer=\"{r2}\",replica=\"r2\"}} 1"
        )) && text.contains(&format!(
            "switchyard_peer_in_sync{{peer=\"{r2}\",replica=\"r2\"}} 1"
        ))
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_restarted_replica_serves_the_current_state_before_it_reports_ready() {
    let mut cluster = Cluster::start().await;
    let old_admin = cluster.replicas[1].admin;
    let r2 = cluster.replicas[1].running.take().unwrap();
    r2.shutdown().await;

    // Changes made while r2 is away: a to MAINT, b's weight to 5.
    cluster.set_state(0, "a", "maint").await;
    let (status, answer) = cluster
        .admin(
            2,
            "PUT",
            "/api/backends/app/servers/b/weight",
            Some(json!({ "weight": 5 })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    eventually("r1 and r3 agree", || async {
        cluster.replicas[2].admin_state("a") == AdminState::Maint
            && cluster.replicas[0].weight("b") == 5
    })
    .await;

    // r2 comes back on its address, with its state file from before.
    let peers: Vec<SocketAddr> = cluster.replicas.iter().map(|r| r.admin).collect();
    let (name, config, state_dir) = {
        let r = &cluster.replicas[1];
        (r.name.clone(), r.config.clone(), r.state_dir.clone())
    };
    std::fs::write(
        &config,
        cluster.config(&name, &old_admin.to_string(), &peers),
    )
    .unwrap();
    let running = start_from_file(&config, &state_dir).await;
    assert_eq!(running.admin, Some(old_admin));
    cluster.replicas[1].running = Some(running);

    let readyz = format!("http://{old_admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = get(&cluster.client, &readyz).await;
        if status == 200 {
            break;
        }
        assert_eq!(
            (status, body.as_str()),
            (503, "pulling the operator state from a peer\n")
        );
        assert!(Instant::now() < deadline, "r2 never became ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Ready: it already serves the current state.
    let r2 = &cluster.replicas[1];
    assert_eq!(r2.admin_state("a"), AdminState::Maint);
    assert_eq!(r2.weight("b"), 5);
    let served = cluster.served(1, 4).await;
    assert!(served.iter().all(|s| s == "b"), "{served:?}");
    cluster.wait_in_sync(1).await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn conflicting_changes_on_two_replicas_end_in_the_same_state_everywhere() {
    let cluster = Cluster::start().await;
    for _ in 0..3 {
        tokio::join!(
            cluster.set_state(0, "a", "maint"),
            cluster.set_state(2, "a", "drain"),
        );
        tokio::join!(
            cluster.set_state(2, "a", "ready"),
            cluster.set_state(0, "a", "drain"),
        );
    }
    eventually("every replica holds the same state for a", || async {
        let states: Vec<AdminState> = cluster
            .replicas
            .iter()
            .map(|r| r.admin_state("a"))
            .collect();
        let mut digests = Vec::new();
        for i in 0..3 {
            let stats = cluster.admin(i, "GET", "/api/stats", None).await.1;
            digests.push(stats["peers"]["digest"].clone());
        }
        states.iter().all(|s| *s == states[0]) && digests.iter().all(|d| *d == digests[0])
    })
    .await;
    let last = cluster.replicas[0].admin_state("a");
    assert!(
        matches!(last, AdminState::Ready | AdminState::Drain),
        "{last:?}"
    );
    for i in 0..3 {
        cluster.wait_in_sync(i).await;
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn with_no_peer_answering_a_replica_waits_then_becomes_ready_on_its_own_state() {
    // A peer that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let cluster_dir = tempfile::tempdir().unwrap();
    let token_file = cluster_dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let a = Backend::start("a").await;
    let config = cluster_dir.path().join("alone.toml");
    std::fs::write(
        &config,
        format!(
            "[global]\naccess_log = \"off\"\nwatch = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             token_file = \"{}\"\npeers = [\"{silent_addr}\"]\n\
             [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"a\"\naddress = \"{}\"\n",
            token_file.display(),
            a.addr
        ),
    )
    .unwrap();
    let started = Instant::now();
    let running = start_from_file(&config, &cluster_dir.path().join("state")).await;
    let http = client();
    let readyz = format!("http://{}/readyz", running.admin.unwrap());
    assert_eq!(get(&http, &readyz).await.0, 503);
    eventually("ready without a peer", || async {
        get(&http, &readyz).await.0 == 200
    })
    .await;
    assert!(
        started.elapsed() >= switchyard::admin::peers::START_WAIT,
        "ready after {:?}",
        started.elapsed()
    );
    running.shutdown().await;
    held.abort();
}

#[tokio::test]
async fn without_peers_nothing_answers_differently() {
    let dir = tempfile::tempdir().unwrap();
    let a = Backend::start("a").await;
    let config = dir.path().join("alone.toml");
    std::fs::write(
        &config,
        format!(
            "[global]\naccess_log = \"off\"\nwatch = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"a\"\naddress = \"{}\"\n",
            a.addr
        ),
    )
    .unwrap();
    let running = start_from_file(&config, &dir.path().join("state")).await;
    let http = client();
    let admin = running.admin.unwrap();
    assert_eq!(get(&http, &format!("http://{admin}/readyz")).await.0, 200);
    let request = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(format!("http://{admin}{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let (status, _, body) = send(&http, request("POST", "/api/peers/exchange")).await;
    assert_eq!(status, 404, "{body}");
    let (_, _, stats) = send(&http, request("GET", "/api/stats")).await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert!(stats.get("peers").is_none(), "{stats}");
    running.shutdown().await;
}

/// The state file keeps each change's stamp, so a restart keeps them.
#[tokio::test]
async fn the_state_file_keeps_the_stamps() {
    let cluster = Cluster::start().await;
    cluster.set_state(1, "b", "drain").await;
    let file = cluster.replicas[1].state_dir.join("state.json");
    eventually("stamp saved", || async {
        std::fs::read_to_string(&file).is_ok_and(|t| {
            let json: Value = serde_json::from_str(&t).unwrap_or_default();
            json["registers"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["server"] == "b" && r["state"] == "drain" && r["replica"] == "r2")
            })
        })
    })
    .await;
    cluster.shutdown().await;
}

/// The split of replica `i`'s route 0, as `/api/stats` shows it.
async fn split_of(cluster: &Cluster, i: usize) -> Value {
    let stats = cluster.admin(i, "GET", "/api/stats", None).await.1;
    stats["frontends"][0]["routes"][0]["split"].clone()
}

#[tokio::test]
async fn split_weights_and_resets_reach_every_replica() {
    let cluster = Cluster::start().await;
    let config_split = split_of(&cluster, 0).await;
    let path = "/api/frontends/web/routes/0/split";
    let (status, answer) = cluster
        .admin(2, "PUT", path, Some(json!({ "app": 50, "spare": 50 })))
        .await;
    assert_eq!(status, 200, "{answer}");
    cluster.set_state(1, "b", "drain").await;
    let wanted = json!([{ "backend": "app", "weight": 50 }, { "backend": "spare", "weight": 50 }]);
    for i in 0..3 {
        eventually("the split and the DRAIN everywhere", || async {
            split_of(&cluster, i).await == wanted
                && cluster.replicas[i].admin_state("b") == AdminState::Drain
        })
        .await;
    }
    // A reset to the config is a change too: it reaches every replica.
    let (status, answer) = cluster
        .admin(0, "POST", "/api/reset", Some(json!({})))
        .await;
    assert_eq!(status, 200, "{answer}");
    for i in 0..3 {
        eventually("the config's split and state everywhere", || async {
            split_of(&cluster, i).await == config_split
                && cluster.replicas[i].admin_state("b") == AdminState::Ready
        })
        .await;
        cluster.wait_in_sync(i).await;
    }
    cluster.shutdown().await;
}
