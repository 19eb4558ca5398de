//! `switchyard check --diff`: what a reload of a file would change, against
//! the config the running instance serves (fetched from its admin API,
//! `GET /api/config`) or against a second file.
//! Invariant: read-only; it asks the running instance nothing but its
//! config, with the admin token.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::config;
use crate::model::{Topology, diff};

/// Where the running config comes from.
#[derive(Debug, Clone)]
pub enum Against {
    /// Another file.
    File(PathBuf),
    /// The admin API at this base URL, with this token.
    Admin { url: String, token: String },
}

/// The lines `check --diff` prints for `file` against `against`.
pub async fn changes(file: &Path, against: &Against) -> anyhow::Result<Vec<String>> {
    let next = super::load(file)?;
    let running = match against {
        Against::File(path) => super::load(path)?,
        Against::Admin { url, token } => running_config(url, token).await?,
    };
    Ok(diff::diff(&running, &next))
}

/// The admin base URL for `topology`'s `[admin] listen` (a wildcard address
/// is reached on loopback).
pub fn default_admin_url(topology: &Topology) -> String {
    let mut addr = topology.admin.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// Fetches `GET /api/config` and parses the text the way the instance did.
async fn running_config(url: &str, token: &str) -> anyhow::Result<Topology> {
    let base: http::Uri = url
        .parse()
        .with_context(|| format!("admin URL {url:?} is not a URL"))?;
    let authority = base
        .authority()
        .with_context(|| format!("admin URL {url:?} has no host:port"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .with_context(|| format!("cannot reach the admin server at {url}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(conn);
    let request = http::Request::get("/api/config")
        .header(http::header::HOST, authority.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    connection.abort();
    anyhow::ensure!(
        status.is_success(),
        "the admin server answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let source = json["source"]
        .as_str()
        .context("the admin server sent no config source")?;
    let file = json["file"].as_str().unwrap_or("running config");
    config::parse(source, Path::new(file))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the running config does not parse")
}
