//! The traffic that trains the release build (`scripts/build-release.sh`,
//! profile-guided optimisation): it runs two origins, starts the given
//! switchyard binary (built with `-Cprofile-generate`) in front of them,
//! sends it the requests a proxy serves most, and stops it with SIGINT so
//! that it writes its profile into `<profile-dir>`.
//!
//! The mix: HTTP/1.1 keep-alive GETs (routed by path, round robin and least
//! connections), a new connection per request, 64 KiB responses, POSTs with
//! a body, HTTP/2 over TLS (ALPN h2) and h2c; all of it twice, with the
//! access log on (the default config's) and off (one proxy process each).
//!
//!     pgo_workload <switchyard-binary> <profile-dir>

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Requests per kind of traffic.
const KEEP_ALIVE: usize = 40_000;
const NEW_CONNECTIONS: usize = 4_000;
const LARGE: usize = 1_000;
const POSTS: usize = 4_000;
const H2_TLS: usize = 20_000;
const H2C: usize = 4_000;
/// Connections (or HTTP/2 streams) in flight at once.
const CONCURRENCY: usize = 16;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(binary), Some(profiles)) = (args.next(), args.next()) else {
        bail!("usage: pgo_workload <switchyard-binary> <profile-dir>");
    };
    let work = tempfile::tempdir()?;
    let origins = [origin().await?, origin().await?];
    let tls = Tls::make(work.path())?;
    for access_log in ["text", "off"] {
        train(&binary, &profiles, work.path(), origins, &tls, access_log).await?;
    }
    Ok(())
}

/// Runs the proxy with this access log, sends it the traffic, stops it.
async fn train(
    binary: &str,
    profiles: &str,
    work: &Path,
    origins: [SocketAddr; 2],
    tls: &Tls,
    access_log: &str,
) -> anyhow::Result<()> {
    let web = free_port()?;
    let secure = free_port()?;
    let config = work.join("switchyard.toml");
    std::fs::write(&config, config_text(web, secure, origins, tls, access_log))?;
    let mut proxy = Command::new(binary)
        .args(["run", "--threads", "1", "-c"])
        .arg(&config)
        .arg("--state-dir")
        .arg(work.join("state"))
        .env("SWITCHYARD_ADMIN_TOKEN", "pgo-workload-token")
        .env("RUST_LOG", "warn")
        .env(
            "LLVM_PROFILE_FILE",
            Path::new(&profiles).join("switchyard-%p.profraw"),
        )
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let driven = drive(web, secure, tls).await;
    // SIGINT: a graceful stop, after which the profile is written.
    let stopped = rustix::process::Pid::from_raw(proxy.id() as i32)
        .context("no process id")
        .and_then(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::INT)
                .context("cannot signal switchyard")
        });
    let status = proxy.wait()?;
    driven?;
    stopped?;
    if !status.success() {
        bail!("switchyard exited with {status}");
    }
    Ok(())
}

async fn drive(web: SocketAddr, secure: SocketAddr, tls: &Tls) -> anyhow::Result<()> {
    wait_for(web).await?;
    wait_for(secure).await?;
    let started = Instant::now();
    h1_keep_alive(web, KEEP_ALIVE / 2, || Ok(get("/"))).await?;
    h1_keep_alive(web, KEEP_ALIVE / 2, || Ok(get("/api/users/42?page=1"))).await?;
    h1_keep_alive(web, LARGE, || Ok(get("/large"))).await?;
    h1_keep_alive(web, POSTS, post).await?;
    h1_new_connections(web, NEW_CONNECTIONS).await?;
    h2(web, None, H2C).await?;
    h2(secure, Some(tls), H2_TLS).await?;
    eprintln!("pgo_workload: traffic sent in {:?}", started.elapsed());
    Ok(())
}

/// `total` requests made by `make` over `CONCURRENCY` keep-alive
/// connections.
async fn h1_keep_alive(
    addr: SocketAddr,
    total: usize,
    make: fn() -> anyhow::Result<Request<Full<Bytes>>>,
) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for _ in 0..CONCURRENCY {
        tasks.spawn(async move {
            let mut sender = h1_connect(addr).await?;
            for _ in 0..total / CONCURRENCY {
                sender.ready().await?;
                expect_ok(sender.send_request(make()?).await?).await?;
            }
            anyhow::Ok(())
        });
    }
    join(tasks).await
}

/// A POST with a 2 KiB body.
fn post() -> anyhow::Result<Request<Full<Bytes>>> {
    Ok(Request::post("/api/orders")
        .header("host", "pgo.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(vec![b'x'; 2048])))?)
}

/// `total` GETs, each on a connection of its own.
async fn h1_new_connections(addr: SocketAddr, total: usize) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for _ in 0..CONCURRENCY {
        tasks.spawn(async move {
            for _ in 0..total / CONCURRENCY {
                let mut sender = h1_connect(addr).await?;
                let mut request = get("/");
                request.headers_mut().insert("connection", "close".parse()?);
                expect_ok(sender.send_request(request).await?).await?;
            }
            anyhow::Ok(())
        });
    }
    join(tasks).await
}

/// `total` GETs as concurrent HTTP/2 streams, over TLS with ALPN h2 or as
/// h2c with prior knowledge.
async fn h2(addr: SocketAddr, tls: Option<&Tls>, total: usize) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    let sender = match tls {
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let stream = connector.connect(name, tcp).await?;
            let (sender, conn) = builder.handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
        None => {
            let (sender, conn) = builder.handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    let uri = match tls {
        Some(_) => "https://localhost/",
        None => "http://localhost/",
    };
    let mut tasks = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let mut sender = sender.clone();
        tasks.spawn(async move {
            for _ in 0..total / CONCURRENCY {
                sender.ready().await?;
                let request = Request::get(uri)
                    .header("user-agent", "pgo-workload")
                    .body(Full::new(Bytes::new()))?;
                expect_ok(sender.send_request(request).await?).await?;
            }
            anyhow::Ok(())
        });
    }
    join(tasks).await
}

async fn h1_connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn get(path: &'static str) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = hyper::Uri::from_static(path);
    request
        .headers_mut()
        .insert("host", hyper::header::HeaderValue::from_static("pgo.test"));
    request.headers_mut().insert(
        "user-agent",
        hyper::header::HeaderValue::from_static("pgo-workload"),
    );
    request
}

async fn expect_ok(response: Response<hyper::body::Incoming>) -> anyhow::Result<()> {
    let status = response.status();
    response.into_body().collect().await?;
    if status != hyper::StatusCode::OK {
        bail!("the proxy answered {status}");
    }
    Ok(())
}

async fn join(mut tasks: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// An origin: a short text on every path, 64 KiB on `/large`; a request's
/// body is read before the answer.
async fn origin() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let large = request.uri().path() == "/large";
                    let _body = request.into_body().collect().await;
                    let body = match large {
                        true => Bytes::from(vec![b'.'; 64 * 1024]),
                        false => Bytes::from_static(b"Hello, world! 0123456789abcdef\n"),
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A port free now on loopback.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn wait_for(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("switchyard did not listen on {addr} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A CA made here, a certificate for `localhost` it signs, and a client
/// that trusts the CA.
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl Tls {
    fn make(dir: &Path) -> anyhow::Result<Tls> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate()?;
        let leaf =
            CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &issuer)?;
        let cert_path = dir.join("localhost.pem");
        let key_path = dir.join("localhost.key");
        std::fs::write(&cert_path, leaf.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Tls {
            cert: cert_path,
            key: key_path,
            client: Arc::new(client),
        })
    }
}

fn config_text(
    web: SocketAddr,
    secure: SocketAddr,
    origins: [SocketAddr; 2],
    tls: &Tls,
    access_log: &str,
) -> String {
    let [o1, o2] = origins;
    format!(
        r#"[global]
access_log = "{access_log}"

[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "web"
listen = "{web}"
default_backend = "app"

  [[frontend.route]]
  path_prefix = "/api/users"
  backend = "users"

[[frontend]]
name = "secure"
listen = "{secure}"
default_backend = "app"
tls = {{ certs = [ {{ cert = "{cert}", key = "{key}" }} ] }}

[[backend]]
name = "app"
balance = "roundrobin"

  [[backend.server]]
  name = "o1"
  address = "{o1}"

  [[backend.server]]
  name = "o2"
  address = "{o2}"

[[backend]]
name = "users"
balance = "leastconn"

  [[backend.server]]
  name = "u1"
  address = "{o1}"
"#,
        cert = tls.cert.display(),
        key = tls.key.display(),
    )
}
