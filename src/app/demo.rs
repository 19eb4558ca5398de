//! Demo backends: tiny HTTP servers that say who they are and echo what they
//! received (method, target, headers), for the first run, docker-compose and
//! tests. `GET /health` answers 200 for health checks. Every answer names the
//! backend (`X-Served-By`) and the host it runs on (`X-Instance`: the
//! container's host name under Docker), so scaled copies can be told apart.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the demo backend `name` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, name: String, shutdown: CancellationToken) {
    let me = Arc::new(Identity {
        name,
        instance: host_name(),
    });
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "demo backend accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let me = Arc::clone(&me);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(Arc::clone(&me), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` and serves the demo backend there.
pub async fn bind_and_serve(
    addr: SocketAddr,
    name: String,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, name, shutdown));
    Ok(local)
}

/// Who answers: the backend's name and the host it runs on.
struct Identity {
    name: String,
    instance: String,
}

/// The host name (a container's id under Docker), or "" when unknown.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

async fn answer(
    me: Arc<Identity>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if request.uri().path() == "/health" {
        return Ok(text(&me, "ok\n".to_owned()));
    }
    let mut echo = format!(
        "Hello from {}\n\n{} {} {:?}\n",
        me.name,
        request.method(),
        request.uri(),
        request.version()
    );
    for (key, value) in request.headers() {
        echo.push_str(&format!(
            "{key}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = request.into_body().collect().await?.to_bytes();
    if !body.is_empty() {
        echo.push_str(&format!("\n({} body bytes)\n", body.len()));
    }
    Ok(text(&me, echo))
}

fn text(me: &Identity, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&me.name) {
        headers.insert("x-served-by", v);
    }
    if let Ok(v) = header::HeaderValue::from_str(&me.instance) {
        headers.insert("x-instance", v);
    }
    response
}

/// The demo backends and where `config/demo.toml` expects them.
pub const BACKENDS: [(&str, &str); 2] =
    [("monolith", "127.0.0.1:9001"), ("users", "127.0.0.1:9002")];

/// Where `switchyard demo` runs when not on the addresses of its config
/// (tests run it on free ports, bound as port 0).
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    /// The first frontend's listener.
    pub listen: Option<SocketAddr>,
    /// The admin server's listener.
    pub admin: Option<SocketAddr>,
    /// Each demo backend's configured address and the address it is bound to.
    pub backends: Vec<(SocketAddr, SocketAddr)>,
}

impl Addresses {
    /// Points `topology` at these addresses; whether anything changed.
    pub fn apply(&self, topology: &mut crate::model::Topology) -> bool {
        let mut changed = false;
        if let (Some(listen), Some(frontend)) = (self.listen, topology.frontends.first_mut()) {
            changed |= frontend.listen != listen;
            frontend.listen = listen;
        }
        if let Some(admin) = self.admin {
            changed |= topology.admin.listen != admin;
            topology.admin.listen = admin;
        }
        let servers = topology
            .backends
            .iter_mut()
            .flat_map(|b| b.servers.iter_mut());
        for server in servers {
            let configured = server.address.as_socket_addr();
            let bound = self.backends.iter().find(|(c, _)| Some(*c) == configured);
            if let Some((configured, bound)) = bound.filter(|(c, b)| c != b) {
                tracing::debug!(%configured, %bound, server = %server.name, "demo backend moved");
                server.address = crate::model::ServerAddress {
                    host: bound.ip().to_string().into(),
                    port: bound.port(),
                };
                changed = true;
            }
        }
        changed
    }
}
