//! One frontend in front of one backend of test servers: the config text,
//! a tally of who served, and the sticky cookie as a client sees it.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use switchyard::app::Running;
use switchyard::state::ServerState;

use super::{Backend, HttpClient, get, send, served_by, url};

/// The sticky cookie's name in these tests.
pub const COOKIE: &str = "SERVERID";

/// A config with frontend `web` sending everything to backend `app`.
/// `backend` holds extra lines of the backend (`cookie = ...`, `check = ...`);
/// each server comes with its extra lines (`state = "maint"`, `weight = 0`).
pub fn config(backend: &str, servers: &[(&Backend, &str)]) -> String {
    let mut text = String::from(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\n",
    );
    text.push_str(backend);
    text.push('\n');
    for (server, extra) in servers {
        text.push_str(&format!(
            "[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\n{extra}\n",
            server.name, server.addr
        ));
    }
    text
}

/// The live state of server `name` of backend `app`.
pub fn server(proxy: &Running, name: &str) -> Arc<ServerState> {
    proxy
        .runtime
        .registry()
        .get("app", name)
        .unwrap_or_else(|| panic!("server {name} in the registry"))
}

/// Sends `n` GETs of `path` (with `cookie` as the Cookie header when given),
/// asserts each is a 200 and counts who served them.
pub async fn tally(
    proxy: &Running,
    client: &HttpClient,
    path: &str,
    cookie: Option<&str>,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (status, headers, body) = match cookie {
            Some(cookie) => get_with_cookie(client, &url(proxy, "web", path), cookie).await,
            None => get(client, &url(proxy, "web", path)).await,
        };
        assert_eq!(status, 200, "{body}");
        *seen.entry(served_by(&headers)).or_default() += 1;
    }
    seen
}

/// Only `name` served, `n` times.
pub fn all(name: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(name.to_owned(), n)])
}

/// A GET with this Cookie header.
pub async fn get_with_cookie(
    client: &HttpClient,
    url: &str,
    cookie: &str,
) -> (u16, http::HeaderMap, String) {
    let request = Request::get(url)
        .header(http::header::COOKIE, cookie)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, request).await
}

/// The whole `Set-Cookie` value that sets the sticky cookie, if any.
pub fn sticky_set_cookie(headers: &http::HeaderMap) -> Option<String> {
    let prefix = format!("{COOKIE}=");
    let mut found = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with(&prefix));
    let first = found.next().map(str::to_owned);
    assert!(found.next().is_none(), "one sticky Set-Cookie at most");
    first
}

/// The `SERVERID=<id>` pair a client sends back, from the response's
/// `Set-Cookie`; panics if the response sets none.
pub fn sticky_pair(headers: &http::HeaderMap) -> String {
    let set = sticky_set_cookie(headers).expect("response sets the sticky cookie");
    set.split(';').next().unwrap().to_owned()
}
