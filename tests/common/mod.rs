//! Test support: real backends on port 0, the proxy started from a config
//! text, an HTTP client, and `eventually` for waiting on the world.
#![allow(dead_code, clippy::unwrap_used)]

pub mod backend;
pub mod capture;
pub mod dns;
pub mod h2_case;
pub mod h2_frames;
pub mod pool;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use switchyard::app::{self, Running, StartOptions};

pub use backend::Backend;

/// Starts the proxy with this config text, with a state directory of its
/// own (so no test sees another's state file).
pub async fn start_proxy(toml: &str) -> Running {
    static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("switchyard-test-{}-{n}", std::process::id()));
    let _fresh = std::fs::remove_dir_all(&dir);
    let topology = switchyard::config::parse(toml, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    start_with(topology, None, dir).await
}

/// Starts the proxy from a config file that reloads re-read, with generated
/// files (admin token, state file) in `state_dir`.
pub async fn start_from_file(file: &Path, state_dir: &Path) -> Running {
    let topology =
        switchyard::config::load(file).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    start_with(topology, Some(file.to_path_buf()), state_dir.to_path_buf()).await
}

async fn start_with(
    topology: switchyard::model::Topology,
    config_file: Option<std::path::PathBuf>,
    state_dir: std::path::PathBuf,
) -> Running {
    app::start(
        topology,
        StartOptions {
            config_file,
            admin_token: Some("test-token".to_owned()),
            state_dir,
            // As `run` serves: two worker threads, each with its own
            // SO_REUSEPORT socket per frontend.
            threads: app::Threads::Own(Some(2)),
        },
    )
    .await
    .expect("proxy starts")
}

/// The proxy's address of frontend `name` as a base URL.
pub fn url(running: &Running, frontend: &str, path: &str) -> String {
    let addr = running.frontend_addr(frontend).expect("frontend bound");
    format!("http://{addr}{path}")
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1.1 client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A GET through `client`; returns status, headers and body text.
pub async fn get(client: &HttpClient, url: &str) -> (u16, http::HeaderMap, String) {
    send(
        client,
        Request::get(url).body(Full::new(Bytes::new())).unwrap(),
    )
    .await
}

pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> (u16, http::HeaderMap, String) {
    let response: Response<_> = client.request(request).await.expect("request succeeds");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The backend name a demo-style response names (`x-served-by`).
pub fn served_by(headers: &http::HeaderMap) -> String {
    headers
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port on which nothing listens (bound, then released).
pub async fn refused_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// An empty-bodied request builder helper.
pub fn empty() -> Empty<Bytes> {
    Empty::new()
}
