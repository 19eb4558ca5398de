//! A bare hyper 1 HTTP/1.1 server answering `ok` on every request once it
//! has read the request's body, with keep-alive: the baseline of
//! `benches/idle-memory.sh`, which measures memory per idle keep-alive
//! connection here and in the proxy, and the origin of
//! `scripts/slow-clients.sh` (whose slow-body clients must meet a server
//! that waits for their body, as an application does).
//!
//!     cargo run --release --example bare_hyper -- 127.0.0.1:18111

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18111".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("bare hyper listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async {
                // A body that breaks off ends the exchange all the same.
                let _body = request.into_body().collect().await;
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                eprintln!("connection ended: {e}");
            }
        });
    }
}
