//! Support for the admin tests: a two-server stack (`app` with `new-stack`
//! and `legacy`, and `other` for splits) behind the proxy, and an admin
//! client that sends the page's headers.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use switchyard::app::Running;

use crate::common::{Backend, HttpClient, client, get, send, served_by, start_proxy, url};

/// The test secret (`tests/common::start_proxy` passes it).
pub const TOKEN: &str = "test-token";

/// The proxy with backends `app` (new-stack, legacy) and `other` (other-1);
/// `/split` is a 1:1 split between `app` and `other`.
pub struct Stack {
    pub proxy: Running,
    pub new_stack: Backend,
    pub legacy: Backend,
    pub other: Backend,
    pub client: HttpClient,
}

impl Stack {
    pub async fn start(app_extra: &str) -> Stack {
        let new_stack = Backend::start("new-stack").await;
        let legacy = Backend::start("legacy").await;
        let other = Backend::start("other-1").await;
        let config = format!(
            "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
             [[frontend.route]]\npath_prefix = \"/split\"\nsplit = {{ app = 1, other = 1 }}\n\
             [[backend]]\nname = \"app\"\n{app_extra}\n\
             [[backend.server]]\nname = \"new-stack\"\naddress = \"{}\"\n\
             [[backend.server]]\nname = \"legacy\"\naddress = \"{}\"\n\
             [[backend]]\nname = \"other\"\n\
             [[backend.server]]\nname = \"other-1\"\naddress = \"{}\"\n",
            new_stack.addr, legacy.addr, other.addr
        );
        Stack {
            proxy: start_proxy(&config).await,
            new_stack,
            legacy,
            other,
            client: client(),
        }
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.admin.expect("admin bound"))
    }

    /// Who served `n` GETs of `path`, in order.
    pub async fn served(&self, path: &str, n: usize) -> Vec<String> {
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            let (status, headers, _) = get(&self.client, &url(&self.proxy, "web", path)).await;
            assert_eq!(status, 200);
            names.push(served_by(&headers));
        }
        names
    }

    /// A request to the admin server with the token; returns status, body.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(self.admin_url(path))
            .header("authorization", format!("Bearer {TOKEN}"));
        if body.is_some() {
            request = request
                .header("content-type", "application/json")
                .header("x-switchyard-admin", "1");
        }
        let body = body.map_or_else(String::new, |b| b.to_string());
        let (status, _, text) = send(
            &self.client,
            request.body(Full::new(Bytes::from(body))).unwrap(),
        )
        .await;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// A raw admin request with exactly these headers; returns status, headers, body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, http::HeaderMap, String) {
        let mut request = Request::builder().method(method).uri(self.admin_url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        send(
            &self.client,
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
    }

    /// The JSON of one server.
    pub async fn server(&self, backend: &str, server: &str) -> Value {
        let (status, json) = self
            .admin(
                "GET",
                &format!("/api/backends/{backend}/servers/{server}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{json}");
        json
    }
}
